"""The administrator's whole day in a real headless Chromium: log in, onboard a
participant, copy the one-time secret with the page's buttons, get a token with it
over HTTP, offboard through the confirmation page, and see the token endpoint refuse
it and the registry API answer 404 — with Chromium reporting no Content-Security-Policy
violation on any page (the admin's and the API docs'). Screenshots land in
test-artifacts/."""

import os
import shutil
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model

from authservice.signing_keys import signing_key_ensure
from registry import services
from tests.keymaterial import ec_key

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", Path(__file__).resolve().parents[2] / "test-artifacts"))
PASSWORD = "a-Long-browser-test-pass-42"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def chromium_page(monkeypatch):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium is required under CI=true and is missing at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium); CI installs it")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test
    # makes between browser steps are ordinary synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
        ])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(15_000)
        page.csp_violations = _record_csp_violations(page)
        page.requested = []  # every URL the page asked for, blocked or not
        page.on("request", lambda request: page.requested.append(request.url))
        yield page
        browser.close()


# Playwright injects this through the DevTools protocol, so the CSP under test does not block it.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  const blocked = event.blockedURI || "inline";
  window.reportCspViolation(`${event.violatedDirective} blocked ${blocked} on ${location.pathname}`);
});
"""


def _record_csp_violations(page) -> list[str]:
    """Every violation Chromium reports, as an event or on the console, on any page."""
    violations: list[str] = []
    page.expose_function("reportCspViolation", lambda violation: violations.append(violation))
    page.add_init_script(REPORT_VIOLATIONS)
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    return violations


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_onboard_and_offboard_through_the_admin(live_server, settings, chromium_page):
    # One administrator's day: four-eyes (two operators) has its own tests.
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "ISSUER": live_server.url, "FOUR_EYES": False}
    signing_key_ensure()
    get_user_model().objects.create_superuser("registrar", "r@example.org", PASSWORD)
    reader = services.participant_onboard(org_name="Reader Co", role="LOAN_AGENT", base_url="https://reader.example",
                                          public_key=ec_key().public_pem(), acting_user=None)
    page = chromium_page

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "registrar")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    page.goto(f"{live_server.url}/admin/registry/participant/onboard/")
    page.fill("#id_new_organisation_name", "Browser Bank")
    page.select_option("#id_role", "LENDER")
    page.fill("#id_base_url", "https://api.browser-bank.example")
    page.fill("#id_public_key", ec_key().public_pem())
    shot(page, "01-onboard-form")
    page.click("input[name=confirm]")
    page.wait_for_selector("text=Recorded Browser Bank")
    shot(page, "02-participant-applied")

    page.click("a.workflow-approve")
    page.click("input[name=confirm]")
    page.wait_for_selector("#client-secret")
    client_id = page.inner_text("#client-id").strip()
    client_secret = page.inner_text("#client-secret").strip()
    shot(page, "03-one-time-secret")
    assert len(client_secret) >= 43

    # Leaving without copying the secret asks first; dismissing keeps the page.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#stored-secret")
    assert page.is_visible("#client-secret")
    # The copy buttons (a static script now, no inline one) put the values on the clipboard.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.click("button[data-copy=client-id]")
    page.wait_for_selector("#copy-status:has-text('Copied.')")
    assert page.evaluate("navigator.clipboard.readText()") == client_id
    page.click("button[data-copy=client-secret]")
    page.wait_for_function("navigator.clipboard.readText().then(text => text.length > 40)")
    assert page.evaluate("navigator.clipboard.readText()") == client_secret

    with httpx.Client(base_url=live_server.url, timeout=10) as http:
        token = http.post("/oauth2/token", data={"grant_type": "client_credentials"},
                          auth=(client_id, client_secret))
        assert token.status_code == 200, token.text
        reader_token = http.post("/oauth2/token", data={"grant_type": "client_credentials"},
                                 auth=(reader.client_id, reader.client_secret)).json()["access_token"]
        participant_id = page.inner_text("#participant-id").strip()
        registry_path = f"/registry/v1/participants/{participant_id}"
        bearer = {"Authorization": f"Bearer {reader_token}"}
        assert http.get(registry_path, headers=bearer).status_code == 200

        page.click("#stored-secret")  # the secret was copied: no question asked
        page.click("a.workflow-offboard")
        page.wait_for_selector(".removal-plan")
        assert client_id in page.inner_text(".removal-plan")
        page.fill("#id_reason", "Licence withdrawn by the regulator")
        page.fill("#id_confirm_name", "Browser Bank")  # offboarding asks for the organisation's name
        shot(page, "04-offboard-confirmation")
        page.click("input[name=confirm]")
        page.wait_for_selector("text=Offboard: done.")
        shot(page, "05-offboarded")

        refused = http.post("/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, client_secret))
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_client"
        assert http.get(registry_path, headers=bearer).status_code == 404

    page.goto(f"{live_server.url}/admin/registry/auditevent/")
    page.wait_for_selector("#result_list")
    page.requested.clear()
    page.goto(f"{live_server.url}/registry/v1/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    shot(page, "06-api-docs")
    page.goto(f"{live_server.url}/registry/v1/redoc")
    page.wait_for_selector("h1:has-text('OCEN Participant Registry API')")
    page.wait_for_selector("img[alt='redocly logo']")  # the side menu's logo, now a local file
    page.wait_for_load_state("networkidle")
    shot(page, "07-api-redoc")
    # Both docs pages come entirely from this host: nothing was even attempted elsewhere.
    assert page.requested, "the request recorder saw nothing"
    elsewhere = [url for url in page.requested if not url.startswith((live_server.url, "data:", "blob:"))]
    assert elsewhere == []
    assert any(url.endswith("/registry/v1/redoc.standalone.js") for url in page.requested)
    assert page.csp_violations == []
