"""A short path for the OAuth endpoints through the middleware stack.

The token, introspection and revocation endpoints use no session, user, messages,
CSRF or static files; every middleware they skip is time saved on the busiest path
of the network. Placed right after SecurityMiddleware, so HTTPS redirects and
security headers still apply, and the Host header is still validated.
"""

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, ResolverMatch, resolve

from authservice.availability import is_unavailable, unavailable_response

FAST_PATHS = frozenset({"/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"})
_resolved: dict[str, ResolverMatch] = {}  # FAST_PATHS resolved once per process


@receiver(setting_changed)
def _forget_resolved(*, setting: str, **kwargs) -> None:
    if setting == "ROOT_URLCONF":
        _resolved.clear()


class OAuthFastPathMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info not in FAST_PATHS:
            return self.get_response(request)
        request.get_host()  # ALLOWED_HOSTS still applies (DisallowedHost -> 400)
        match = _resolved.get(request.path_info)
        if match is None:
            try:
                match = _resolved[request.path_info] = resolve(request.path_info)
            except Resolver404:
                return self.get_response(request)
        request.resolver_match = match  # the endpoint's label in the latency histogram
        try:
            return match.func(request, *match.args, **match.kwargs)
        except Exception as exc:
            if is_unavailable(exc):
                return unavailable_response(request, exc)
            raise
