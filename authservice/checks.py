"""System checks for configuration that is legal but unsafe."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from authservice.conf import authservice_settings


@register()
def authservice_settings_check(app_configs, **kwargs):
    """The AUTHSERVICE dict loads: known keys, valid values, hooks that import."""
    authservice_settings.reload()
    try:
        authservice_settings.ISSUER  # noqa: B018  (loading validates every key)
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="authservice.E001")]
    return []


@register()
def key_encryption_key_check(app_configs, **kwargs):
    if settings.DEBUG or settings.AUTHSERVICE.get("KEY_ENCRYPTION_KEYS"):
        return []
    return [
        Warning(
            "AUTHSERVICE_KEY_ENCRYPTION_KEY is not set: the service's private keys are encrypted "
            "with a key derived from DJANGO_SECRET_KEY.",
            hint="Set AUTHSERVICE_KEY_ENCRYPTION_KEY to a dedicated secret (e.g. a Fernet key).",
            id="authservice.W001",
        )
    ]


@register(Tags.security, deploy=True)
def issuer_https_check(app_configs, **kwargs):
    issuer = settings.AUTHSERVICE.get("ISSUER", "")
    if getattr(settings, "SECURE_HTTPS", False) and not issuer.startswith("https://"):
        return [
            Warning(
                "AUTHSERVICE_ISSUER is not an https URL while DJANGO_SECURE_HTTPS is on.",
                id="authservice.W002",
            )
        ]
    return []
