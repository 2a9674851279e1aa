"""System checks for configuration that is legal but unsafe. (Those of the key-encryption
keys and the stored signing keys are the signing app's: ``signing.checks``.)"""

from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders
from django.contrib.staticfiles.storage import staticfiles_storage
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


# What collectstatic skips by default.
STATIC_IGNORE_PATTERNS = ["CVS", ".*", "*~"]


def _uncollected_static_files() -> str | None:
    """Why the pages' static files cannot be served, or None when they can."""
    manifest = getattr(staticfiles_storage, "manifest_name", None)
    if manifest is None:
        root = Path(settings.STATIC_ROOT) if settings.STATIC_ROOT else None
        if root is None or not root.is_dir() or not any(root.iterdir()):
            return f"STATIC_ROOT ({root}) is empty"
        return None
    try:
        collected, _ = staticfiles_storage.load_manifest()
    except ValueError:
        return f"the manifest {manifest} in STATIC_ROOT cannot be read"
    if not collected:
        return f"STATIC_ROOT ({settings.STATIC_ROOT}) has no manifest {manifest}"
    missing = sorted({path for finder in finders.get_finders()
                      for path, _ in finder.list(STATIC_IGNORE_PATTERNS)} - set(collected))
    if missing:
        return (f"{len(missing)} static file(s) are missing from the manifest (collected before an upgrade?), "
                f"e.g. {missing[0]}")
    return None


@register()
def static_files_collected_check(app_configs, **kwargs):
    """The hashed-manifest storage makes every page that names a static file missing from
    the manifest a 500 (the admin login, /registry/v1/docs and /redoc), so say so before."""
    if settings.DEBUG:
        return []
    problem = _uncollected_static_files()
    if problem is None:
        return []
    return [
        Warning(
            f"Static files are not collected: {problem}. The admin and the API docs answer 500 until they are.",
            hint="Run `python manage.py collectstatic --noinput` on every deployment, after each upgrade.",
            id="authservice.W003",
        )
    ]
