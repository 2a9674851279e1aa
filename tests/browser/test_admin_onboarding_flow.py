"""The administrator's whole day in a real headless Chromium: log in, onboard a
participant, read the one-time secret off the page, get a token with it over HTTP,
offboard through the confirmation page, and see the token endpoint refuse it and
the registry API answer 404. Screenshots land in test-artifacts/."""

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
        yield page
        browser.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_onboard_and_offboard_through_the_admin(live_server, settings, chromium_page):
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "ISSUER": live_server.url}
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

        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#stored-secret")
        page.click("a.workflow-offboard")
        page.wait_for_selector(".removal-plan")
        assert client_id in page.inner_text(".removal-plan")
        page.fill("#id_reason", "Licence withdrawn by the regulator")
        shot(page, "04-offboard-confirmation")
        page.click("input[name=confirm]")
        page.wait_for_selector("text=Offboard: done.")
        shot(page, "05-offboarded")

        refused = http.post("/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, client_secret))
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_client"
        assert http.get(registry_path, headers=bearer).status_code == 404
