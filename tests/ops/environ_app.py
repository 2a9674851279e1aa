"""A WSGI app that answers with the names of the launcher's secret variables its request environ carries."""

from authservice.serve import SECRET_VARIABLES


def application(environ, start_response):
    body = ",".join(sorted(name for name in SECRET_VARIABLES if name in environ)).encode() or b"-"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
