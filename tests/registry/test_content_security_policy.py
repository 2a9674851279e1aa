"""A strict Content-Security-Policy on the admin and the API docs: only this origin's
scripts run, so markup injected into a page cannot. The pages themselves carry no
inline script, event handler or (in the admin) inline style. The browser test checks
that Chromium reports no violation and the copy buttons still work."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from authservice.csp import HEADER

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)
INLINE_STYLE = re.compile(r"<style\b|<[^>]+\sstyle\s*=", re.IGNORECASE)


def _directives(response) -> dict[str, list[str]]:
    header = response[HEADER]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def _assert_strict(response) -> None:
    directives = _directives(response)
    assert directives["script-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"] and directives["base-uri"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert "default-src" in directives


@pytest.mark.parametrize("path", ["/admin/", "/admin/login/", "/registry/v1/docs", "/registry/v1/redoc", "/healthz"])
def test_every_page_carries_a_strict_policy(client, db, path):
    response = client.get(path)
    assert HEADER in response, path
    _assert_strict(response)


def test_admin_pages_have_no_inline_script_handler_or_style(onboard, admin_user):
    creds, _ = onboard()
    participant = creds.participant
    browser = Client()
    browser.force_login(admin_user)
    pages = [
        browser.get(reverse("admin:index")),
        browser.get(reverse("admin:registry_participant_changelist")),
        browser.get(reverse("admin:registry_participant_change", args=[participant.pk])),
        browser.get(reverse("admin:registry_participant_onboard")),
        browser.get(reverse("admin:registry_auditevent_changelist")),
        browser.get(reverse("admin:registry_participant_workflow", args=[participant.pk, "offboard"])),
        browser.post(reverse("admin:registry_participant_workflow", args=[participant.pk, "rotate-secret"]),
                     {"grace_seconds": "0"}, follow=True),  # the one-time secret page, after the redirect
    ]
    assert 'id="client-secret"' in pages[-1].content.decode()
    for response in pages:
        assert response.status_code == 200
        _assert_strict(response)
        assert _directives(response)["style-src"] == ["'self'"]
        html = response.content.decode()
        assert not INLINE_SCRIPT.search(html), INLINE_SCRIPT.search(html).group(0)
        assert not EVENT_HANDLER.search(html), EVENT_HANDLER.search(html).group(0)
        assert not INLINE_STYLE.search(html), INLINE_STYLE.search(html).group(0)


def test_docs_pages_load_their_scripts_from_this_origin(client, db):
    for path in ("/registry/v1/docs", "/registry/v1/redoc"):
        response = client.get(path)
        html = response.content.decode()
        assert not INLINE_SCRIPT.search(html), path
        assert "fonts.googleapis.com" not in html
    swagger = client.get("/registry/v1/docs")
    init_script = re.search(r'<script src="([^"]*script=[^"]*)"', swagger.content.decode()).group(1)
    served = client.get(init_script.replace("&amp;", "&"))
    assert served.status_code == 200 and served["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in served.content.decode()
    # ReDoc's renderer injects <style> elements: that page allows inline styles, never inline scripts.
    assert _directives(client.get("/registry/v1/redoc"))["style-src"] == ["'self'", "'unsafe-inline'"]
