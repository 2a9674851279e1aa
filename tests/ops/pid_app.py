"""A WSGI app that answers with its worker's pid after a short piece of work."""

import os
import time


def application(environ, start_response):
    time.sleep(0.02)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
