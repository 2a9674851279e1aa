"""A WSGI app that answers with its request environ's keys and string values (as JSON)."""

import json


def application(environ, start_response):
    body = json.dumps({name: value for name, value in environ.items() if isinstance(value, str)}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
