"""The registry console in a real headless Chromium at 1280x900: reloading the new-secret
page rotates nothing, four-eyes approval and offboarding with two operators (the
organisation's name typed to confirm), the dashboard,
the audit log's date filter and CSV export, and the lists' copy buttons — with no
Content-Security-Policy violation on any page. Screenshots of every page land in
test-artifacts/ (console-*.png).

Participants are created through ``registry.services`` in the test, not through the
admin by the operator who then approves them (four-eyes approval forbids that)."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils.text import slugify

from authservice.signing_keys import signing_key_ensure
from registry import services
from registry.models import AuditAction, AuditEvent, Status
from tests.browser.test_admin_onboarding_flow import (  # noqa: F401 (chromium_page is a fixture)
    ARTIFACTS,
    PASSWORD,
    _record_csp_violations,
    chromium_page,
)
from tests.keymaterial import ec_key

pytestmark = pytest.mark.django_db(transaction=True)


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def _log_in(page, base: str) -> None:
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "registrar")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


@pytest.fixture
def console(live_server, settings, chromium_page):  # noqa: F811 (the fixture imported above)
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "ISSUER": live_server.url}
    signing_key_ensure()
    get_user_model().objects.create_superuser("registrar", "r@example.org", PASSWORD)
    _log_in(chromium_page, live_server.url)
    return chromium_page, live_server.url


def _onboard(name: str, role: str = "LENDER", **key):
    return services.participant_onboard(org_name=name, role=role, base_url=f"https://api.{slugify(name)}.example",
                                        public_key=key.get("material") or ec_key().public_pem(), acting_user=None)


def _change_url(base: str, participant) -> str:
    return f"{base}/admin/registry/participant/{participant.pk}/change/"


def test_reload_after_rotate_changes_nothing(console):
    page, base = console
    creds = _onboard("Reload Bank")
    participant = creds.participant
    page.goto(_change_url(base, participant))
    shot(page, "01-participant-approved")
    # "Revoke all tokens now" sits right after "Rotate client secret", in red.
    tools = page.locator(".registry-workflows a.button")
    labels = tools.all_inner_texts()
    assert labels.index("Revoke all tokens now") == labels.index("Rotate client secret") + 1
    assert "danger" in page.get_attribute("a.workflow-revoke-tokens", "class")
    # The row of buttons stays clear of the participant's name.
    name_box = page.locator("#content h2").first.bounding_box()
    row_box = page.locator(".registry-workflows").bounding_box()
    assert row_box["y"] >= name_box["y"] + name_box["height"]

    page.click("a.workflow-rotate-secret")
    page.fill("#id_grace_seconds", "0")
    shot(page, "01b-rotate-form")
    page.click("input[name=confirm]")
    page.wait_for_selector("#client-secret")
    secret = page.inner_text("#client-secret").strip()
    assert secret not in page.url and "/credentials/" in page.url
    assert page.inner_text("#token-endpoint") == f"{base}/oauth2/token"
    shot(page, "02-new-secret")
    # The configuration file, with the secret once because the operator asks on this page.
    page.check("#include-secret")
    with page.expect_download() as info:
        page.click("#download-configuration")
    configuration = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    assert configuration["client_secret"] == secret and configuration["client_id"] == creds.client_id
    assert configuration["token_endpoint"] == f"{base}/oauth2/token"
    page.wait_for_selector("#include-secret:disabled")

    page.reload()
    page.wait_for_selector("#already-shown")
    assert page.locator("#client-secret").count() == 0
    shot(page, "03-reloaded-secret-page")
    page.go_back()
    page.wait_for_load_state()
    assert page.locator("#client-secret").count() == 0

    with httpx.Client(base_url=base, timeout=10) as http:
        token = http.post("/oauth2/token", data={"grant_type": "client_credentials"},
                          auth=(creds.client_id, secret))
        assert token.status_code == 200, token.text
    assert AuditEvent.objects.filter(participant=participant, action=AuditAction.CLIENT_SECRET_ROTATED).count() == 1
    assert page.csp_violations == []


def _second_operator(page, base: str, username: str = "checker"):
    """Another operator in their own browser context (own session), logged in."""
    get_user_model().objects.create_superuser(username, f"{username}@example.org", PASSWORD)
    context = page.context.browser.new_context(viewport={"width": 1280, "height": 900})
    other = context.new_page()
    other.set_default_timeout(15_000)
    other.csp_violations = _record_csp_violations(other)
    other.goto(f"{base}/admin/login/")
    other.fill("#id_username", username)
    other.fill("#id_password", PASSWORD)
    other.click("input[type=submit]")
    other.wait_for_url(f"{base}/admin/")
    return other


def test_four_eyes_lifecycle_with_two_operators(console):
    """registrar records, cannot approve; checker approves. registrar requests offboarding,
    cannot confirm it; checker confirms, typing the organisation's name (red button)."""
    page, base = console
    registrar = get_user_model().objects.get(username="registrar")
    organisation = services.organisation_create(legal_name="Danger Bank", acting_user=registrar)
    participant = services.participant_apply(organisation=organisation, role="LENDER",
                                             base_url="https://api.danger-bank.example",
                                             public_key=ec_key().public_pem(), acting_user=registrar)
    checker = _second_operator(page, base)

    page.goto(_change_url(base, participant))
    assert "an operator other than registrar" in page.inner_text("#pending-action")
    assert page.locator("a.workflow-approve").count() == 0  # not offered to the one who recorded it …
    page.goto(f"{base}/admin/registry/participant/{participant.pk}/workflow/approve/")
    page.click("input[name=confirm]")  # … and refused if asked for all the same
    page.wait_for_selector(".errorlist, .errornote")
    assert "you recorded this application, so another operator must approve it" in page.content()
    shot(page, "10-four-eyes-self-approval-refused")
    participant.refresh_from_db()
    assert participant.status == Status.APPLIED

    checker.goto(_change_url(base, participant))
    checker.click("a.workflow-approve")
    checker.click("input[name=confirm]")
    checker.wait_for_selector("#client-secret")
    shot(checker, "11-four-eyes-approved-by-checker")
    participant.refresh_from_db()
    assert participant.status == Status.APPROVED and participant.approved_by.username == "checker"

    page.goto(_change_url(base, participant))
    assert page.locator("a.workflow-offboard").count() == 0  # no one-person offboarding
    page.click("a.workflow-request-offboard")
    page.fill("#id_reason", "Licence withdrawn")
    page.click("input[name=confirm]")
    page.wait_for_selector("#pending-action")
    assert "waiting for confirmation by an operator other than registrar" in page.inner_text("#pending-action")
    shot(page, "12-offboarding-requested")
    assert page.locator("a.workflow-confirm-offboard").count() == 0  # the requester cannot confirm

    checker.goto(_change_url(base, participant))
    checker.click("a.workflow-confirm-offboard")
    checker.wait_for_selector(".removal-plan")
    background = checker.eval_on_selector("input[name=confirm]", "el => getComputedStyle(el).backgroundColor")
    assert background == "rgb(186, 33, 33)"  # red, not the admin's blue
    checker.fill("#id_confirm_name", "Danger Bnak")
    checker.click("input[name=confirm]")
    checker.wait_for_selector(".errorlist")
    assert "That is not the organisation's name" in checker.inner_text(".errorlist")
    shot(checker, "04-offboard-wrong-name")
    participant.refresh_from_db()
    assert participant.status == Status.APPROVED

    checker.fill("#id_confirm_name", "danger bank")
    checker.click("input[name=confirm]")
    checker.wait_for_selector("text=Confirm offboarding: done.")
    participant.refresh_from_db()
    assert participant.status == Status.OFFBOARDED and participant.status_reason == "Licence withdrawn"
    checker.reload()  # the redirect after POST: a reload asks nothing and changes nothing
    checker.wait_for_selector("text=Offboarded")
    assert page.csp_violations == [] and checker.csp_violations == []


def test_grant_access_adds_scopes_picked_from_the_catalogue(console):
    """The other participant found by typing (autocomplete), scopes ticked from the
    catalogue; a second grant adds to the first and the page shows before and after."""
    page, base = console
    for name in ("ocen.loan", "ocen.offer"):
        services.scope_define(name=name, description=f"{name} scope", acting_user=None)
    agent = _onboard("Grant Agent", "LOAN_AGENT").participant
    lender = _onboard("Grant Lender").participant

    def grant(scope: str) -> None:
        page.goto(_change_url(base, agent))
        page.click("a.workflow-grant-access")
        page.select_option("#id_direction", "client")
        page.click(".select2-selection")  # the autocomplete, not a list of every participant
        page.fill(".select2-search__field", "Grant Lend")
        page.click(".select2-results__option:has-text('Grant Lender')")
        page.check(f"input[name=scopes][value='{scope}']")
        shot(page, f"13-grant-{scope}")
        page.click("input[name=confirm]")

    grant("ocen.loan")
    page.wait_for_selector("text=Granted ocen.loan.")
    grant("ocen.offer")
    page.wait_for_selector("text=Added: before ocen.loan; after ocen.loan ocen.offer.")
    shot(page, "14-grant-merged")
    mapping = agent.mappings_as_client.get(provider=lender)
    assert set(mapping.scopes.split()) == {"ocen.loan", "ocen.offer"}
    assert page.csp_violations == []


def test_dashboard(console):
    page, base = console
    _onboard("Approved Bank")
    _onboard("Expiring Bank", "LOAN_AGENT",
             material=ec_key().certificate(not_after=datetime.now(UTC) + timedelta(days=12)))
    organisation = services.organisation_create(legal_name="Waiting Co", acting_user=None)
    waiting = services.participant_apply(organisation=organisation, role="KYC_PARTNER",
                                         base_url="https://kyc.example", public_key=ec_key().public_pem(),
                                         acting_user=None)
    call_command("verify_audit_log", stdout=io.StringIO())
    page.goto(f"{base}/admin/")
    page.wait_for_selector("#dash-queue")
    assert "Waiting Co" in page.inner_text("#dash-queue")
    assert "Expiring Bank" in page.inner_text("#dash-expiring")
    assert "passed" in page.inner_text("#dash-audit-chain")
    assert page.title().endswith("OCEN Registry")
    shot(page, "05-dashboard")
    page.click(f"#dash-queue a[href$='/{waiting.pk}/change/']")
    page.wait_for_selector("a.workflow-approve")
    assert page.csp_violations == []


def test_audit_log_filter_and_csv(console):
    page, base = console
    old = _onboard("Old Bank").participant
    _onboard("New Bank", "LOAN_AGENT")
    old_day = datetime.now(UTC) - timedelta(days=40)
    AuditEvent.objects.filter(participant=old).update(occurred_at=old_day)
    day = old_day.date().isoformat()

    page.goto(f"{base}/admin/registry/auditevent/")
    page.wait_for_selector("#audit-chain-status")
    page.fill("#occurred_from", day)
    page.fill("#occurred_to", day)
    page.click("#date-range-filter input[type=submit]")
    page.wait_for_url(f"**occurred_from={day}**")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == AuditEvent.objects.filter(participant=old).count()
    assert "New Bank" not in page.inner_text("#result_list")
    shot(page, "06-audit-log-filtered")

    with page.expect_download() as info:
        page.click("#export-csv")
    exported = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))
    assert len(exported) == rows.count()
    assert {row["participant_id"] for row in exported} == {str(old.participant_id)}

    page.locator("#result_list tbody tr th a").first.click()
    page.wait_for_selector("table.audit-diff")
    shot(page, "07-audit-event-diff")
    assert page.csp_violations == []


def test_participant_list_fits_and_copies_ids(console):
    page, base = console
    creds = _onboard("A Bank With A Rather Long Legal Name Limited")
    for n in range(3):
        _onboard(f"List Bank {n}", "LOAN_AGENT")
    page.goto(f"{base}/admin/registry/participant/")
    page.wait_for_selector("#result_list")
    shot(page, "08-participant-list")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280, f"the page is {width} px wide"
    table, room = page.evaluate("[document.querySelector('.results').scrollWidth, "
                                "document.querySelector('.results').clientWidth]")
    assert table <= room, f"the list needs {table} px and has {room}: columns are cut off"
    for column in ("participant_display", "ids", "base_url", "approved_at_display", "last_activity_display"):
        assert page.locator(f"th.column-{column}").is_visible()
    heights = page.eval_on_selector_all(".id-line", "lines => lines.map(line => line.getBoundingClientRect().height)")
    assert heights and max(heights) < 24  # one line each, no UUID wrapped over four
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page.click(f"button.copy-id[data-copy-value='{creds.participant.participant_id}']")
    page.wait_for_selector("button.copy-id.copied")
    assert page.evaluate("navigator.clipboard.readText()") == str(creds.participant.participant_id)
    assert page.csp_violations == []


def test_lockout_page_is_styled(live_server, chromium_page, settings):  # noqa: F811 (the fixture imported above)
    page = chromium_page
    get_user_model().objects.create_superuser("registrar", "r@example.org", PASSWORD)
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "registrar")
        page.fill("#id_password", "wrong-password")
        page.click("input[type=submit]")
    page.wait_for_selector("text=Too many failed sign-ins")
    assert page.inner_text("#site-name") == "OCEN Registry"
    shot(page, "09-lockout")
    assert page.csp_violations == []
