"""System checks for configuration that is legal but unsafe."""

from django.conf import settings
from django.core.checks import Tags, Warning, register

from authservice.conf import authservice_settings


@register()
def key_encryption_key_check(app_configs, **kwargs):
    if settings.DEBUG or authservice_settings.KEY_ENCRYPTION_KEYS:
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
    if getattr(settings, "SECURE_HTTPS", False) and not authservice_settings.ISSUER.startswith("https://"):
        return [
            Warning(
                "AUTHSERVICE_ISSUER is not an https URL while DJANGO_SECURE_HTTPS is on.",
                id="authservice.W002",
            )
        ]
    return []
