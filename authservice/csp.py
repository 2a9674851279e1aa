"""Content-Security-Policy on every response the service renders.

The admin, the API docs and every other page run only scripts and styles served from
this origin: no inline script, no ``eval``, no third-party origin, no plugins, no
framing, forms posting only here. Injected markup therefore cannot run. A view that
needs more says exactly what with ``csp_update`` (ReDoc's renderer injects <style>
elements). Django 5.2 has no CSP middleware of its own; this is the whole of ours.
"""

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"

POLICY: dict[str, tuple[str, ...]] = {
    "default-src": ("'self'",),
    "script-src": ("'self'",),
    "style-src": ("'self'",),
    "img-src": ("'self'", "data:"),
    "font-src": ("'self'",),
    "connect-src": ("'self'",),
    "object-src": ("'none'",),
    "base-uri": ("'none'",),
    "form-action": ("'self'",),
    "frame-ancestors": ("'none'",),
}


def policy(extra: dict[str, tuple[str, ...]] | None = None) -> str:
    """The header value: the strict policy, with ``extra`` sources added per directive."""
    extra = extra or {}
    names = [*POLICY, *(name for name in extra if name not in POLICY)]
    return "; ".join(f"{name} {' '.join(POLICY.get(name, ()) + extra.get(name, ()))}" for name in names)


STRICT = policy()


def csp_update(**directives: tuple[str, ...]) -> Callable:
    """Add sources to some directives for one view: ``csp_update(style_src=("'unsafe-inline'",))``."""
    extra = {name.replace("_", "-"): tuple(sources) for name, sources in directives.items()}
    header = policy(extra)

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            response = view(request, *args, **kwargs)
            response[HEADER] = header
            return response

        return wrapped

    return decorator


class ContentSecurityPolicyMiddleware:
    """Sends the strict policy on every response that does not carry its own."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if HEADER not in response:
            response[HEADER] = STRICT
        return response
