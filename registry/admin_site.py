"""The registry's admin site: "OCEN Registry" (setting and env var
``AUTHSERVICE_ADMIN_TITLE``), the registry dashboard as its home page, the registry
first in the navigation and Django's own sections (users, groups, OAuth clients,
Axes) below it, and "View site" leading to the registry API's documentation.

Installed through ``RegistryAdminConfig`` in ``INSTALLED_APPS`` (in place of
``django.contrib.admin``), so ``admin.site`` and every ``@admin.register`` use it.
"""

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse

DEFAULT_TITLE = "OCEN Registry"
# Navigation order: the registry, then this service's own records (its OAuth clients, its
# signing keys), then Django's internals.
APP_ORDER = ["registry", "authservice", "signing"]


def admin_title() -> str:
    """The site header and title: ``settings.AUTHSERVICE_ADMIN_TITLE``, else "OCEN Registry"."""
    return getattr(settings, "AUTHSERVICE_ADMIN_TITLE", "") or DEFAULT_TITLE


class RegistryAdminSite(admin.AdminSite):
    index_template = "registry/admin/dashboard.html"
    # At 1280 px the navigation sidebar and the list filters left the participant list
    # 630 px, and it scrolled sideways; the breadcrumbs and the dashboard navigate instead.
    enable_nav_sidebar = False

    def each_context(self, request: HttpRequest) -> dict:
        title = admin_title()
        # Read per request, so a changed setting (or override_settings) shows at once.
        self.site_header = self.site_title = title
        self.index_title = "Registry dashboard"
        self.site_url = reverse("registry-api:swagger-ui")
        return super().each_context(request)

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict]:
        apps = super().get_app_list(request, app_label)

        def position(app: dict) -> tuple[int, str]:
            label = app["app_label"]
            return (APP_ORDER.index(label) if label in APP_ORDER else len(APP_ORDER), app["name"].lower())

        return sorted(apps, key=position)

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> TemplateResponse:
        from registry.dashboard import registry_dashboard  # the models load after the admin site

        extra_context = {**(extra_context or {}), "dashboard": registry_dashboard()}
        return super().index(request, extra_context)


class RegistryAdminConfig(AdminConfig):
    default_site = "registry.admin_site.RegistryAdminSite"
