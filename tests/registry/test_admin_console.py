"""The registry console an operator trusts, through HTTP: every state-changing form
redirects after POST, a one-time secret is shown once from a single-use hand-off (a
reload rotates nothing), dangerous actions ask for the organisation's name, the
dashboard, the audit log's filters, CSV export and diff, the credentials page and its
configuration file, and the lists and their search."""

import csv
import io
import json
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from authservice.auth_limits import PAIR, Lockout
from authservice.models import AuthFailureCounter
from registry import services
from registry.models import AuditAction, AuditEvent, Participant, Status
from tests.keymaterial import ec_key

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def one_operator(settings, scope_catalogue):
    """These tests are about the pages, driven by one operator: four-eyes off (it has its
    own tests in test_four_eyes.py, the typed name on confirm-offboard included), and
    the scopes they grant in the catalogue."""
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "FOUR_EYES": False}

CHANGELIST = "/admin/registry/participant/"
AUDIT = "/admin/registry/auditevent/"


def workflow_url(participant, slug):
    return reverse("admin:registry_participant_workflow", args=[participant.pk, slug])


def change_url(participant):
    return reverse("admin:registry_participant_change", args=[participant.pk])


def secret_on(response) -> str:
    html = response.content.decode()
    assert 'id="client-secret">' in html, html[:2000]
    return html.split('id="client-secret">')[1].split("<")[0]


@pytest.fixture
def browser(admin_user):
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def approved(onboard):
    creds, _ = onboard("LENDER", "Console Bank")
    return creds


def _rotations(participant) -> int:
    return AuditEvent.objects.filter(participant=participant, action=AuditAction.CLIENT_SECRET_ROTATED).count()


# --- The one-time secret: redirect after POST, shown once, reload changes nothing ------------------

def test_reload_after_rotate_shows_no_secret_and_rotates_nothing(browser, approved, token_for, caplog):
    caplog.set_level(logging.DEBUG)
    participant = approved.participant
    posted = browser.post(workflow_url(participant, "rotate-secret"), {"grace_seconds": "0"})
    assert posted.status_code == 303
    page_url = posted["Location"]
    assert page_url.startswith(f"/admin/registry/participant/{participant.pk}/credentials/")

    first = browser.get(page_url)
    assert first.status_code == 200 and "no-store" in first["Cache-Control"]
    secret = secret_on(first)
    assert secret not in page_url

    reload = browser.get(page_url)
    html = reload.content.decode()
    assert reload.status_code == 410
    assert 'id="client-secret"' not in html and secret not in html
    assert "already shown" in html and "rotate the secret again" in html

    participant.refresh_from_db()
    assert token_for(participant.client, secret).status_code == 200  # the secret copied first still works
    assert _rotations(participant) == 1
    assert secret not in caplog.text


def test_the_session_never_holds_the_secret_readably(browser, approved):
    posted = browser.post(workflow_url(approved.participant, "rotate-secret"), {"grace_seconds": "0"})
    session = SessionStore(session_key=browser.cookies["sessionid"].value)
    stored = json.dumps(session.load())
    secret = secret_on(browser.get(posted["Location"]))
    assert "registry_credential_handoffs" in stored and secret not in stored


def test_approve_redirects_to_the_one_time_page(browser, organisation, admin_user, token_for, signing_key):
    applied = services.participant_apply(organisation=organisation, role="LENDER", base_url="https://a.example",
                                         public_key=ec_key().public_pem(), acting_user=admin_user)
    posted = browser.post(workflow_url(applied, "approve"), {"confirm": "1"})
    assert posted.status_code == 303
    secret = secret_on(browser.get(posted["Location"]))
    applied.refresh_from_db()
    assert token_for(applied.client, secret).status_code == 200
    assert browser.get(posted["Location"]).status_code == 410


def test_another_session_cannot_open_the_hand_off(browser, approved, admin_user):
    posted = browser.post(workflow_url(approved.participant, "rotate-secret"), {"grace_seconds": "0"})
    other = Client()
    other.force_login(admin_user)
    stolen = other.get(posted["Location"])
    assert stolen.status_code == 410 and 'id="client-secret"' not in stolen.content.decode()
    assert browser.get(posted["Location"]).status_code == 200  # its own session still gets it, once


def test_going_back_to_the_participant_ends_the_hand_off(browser, approved):
    posted = browser.post(workflow_url(approved.participant, "rotate-secret"), {"grace_seconds": "0"})
    secret_on(browser.get(posted["Location"]))
    browser.get(change_url(approved.participant))
    session = SessionStore(session_key=browser.cookies["sessionid"].value).load()
    assert "registry_credential_handoffs" not in session
    assert browser.post(posted["Location"] + "download/", {"include_secret": "1"}).status_code == 303


def test_an_unseen_hand_off_expires(browser, approved, monkeypatch):
    posted = browser.post(workflow_url(approved.participant, "rotate-secret"), {"grace_seconds": "0"})
    later = time.time() + 301
    monkeypatch.setattr("cryptography.fernet.time.time", lambda: later)
    assert browser.get(posted["Location"]).status_code == 410


def test_a_handle_under_another_participant_shows_nothing(browser, approved, onboard):
    other, _ = onboard("LOAN_AGENT", "Other Co")
    posted = browser.post(workflow_url(approved.participant, "rotate-secret"), {"grace_seconds": "0"})
    handle = posted["Location"].rstrip("/").rsplit("/", 1)[1]
    wrong = reverse("admin:registry_participant_credentials", args=[other.participant.pk, handle])
    assert browser.get(wrong).status_code == 410


# --- Every state-changing form redirects (303) --------------------------------------------------------

def test_every_workflow_redirects_after_post(browser, onboard, organisation, admin_user):
    creds, _ = onboard("LENDER", "Redirect Bank")
    provider, _ = onboard("LOAN_AGENT", "Provider Co")
    participant = creds.participant
    pem = ec_key().public_pem()
    steps = [
        (workflow_url(participant, "add-endpoint"), {"url": "https://second.example/api"}),
        (workflow_url(participant, "add-key"), {"public_key": pem}),
        (workflow_url(participant, "grant-access"), {"direction": "client", "other": provider.participant.pk,
                                                     "scopes": "ocen.loan"}),
        (workflow_url(participant, "revoke-tokens"), {"reason": "precaution"}),
        (workflow_url(participant, "suspend"), {"reason": "audit"}),
        (workflow_url(participant, "reinstate"), {"confirm": "1"}),
    ]
    for url, data in steps:
        response = browser.post(url, data)
        assert response.status_code == 303, (url, response.content.decode()[:500])
        assert response["Location"] == change_url(participant)
    endpoint = participant.endpoints.get(url__contains="second")
    key = participant.keys.order_by("-pk").first()
    mapping = participant.mappings_as_client.exclude(provider=None).get()
    for name, args in [("registry_participant_endpoint_remove", [participant.pk, endpoint.pk]),
                       ("registry_participant_key_revoke", [participant.pk, key.pk]),
                       ("registry_participant_mapping_remove", [participant.pk, mapping.pk])]:
        response = browser.post(reverse(f"admin:{name}", args=args), {"confirm": "1"})
        assert response.status_code == 303 and response["Location"] == change_url(participant)
    applied = services.participant_apply(organisation=organisation, role="KYC_PARTNER",
                                         base_url="https://kyc.example", public_key=ec_key().public_pem(),
                                         acting_user=admin_user)
    assert browser.post(workflow_url(applied, "review"), {"confirm": "1"}).status_code == 303
    assert browser.post(workflow_url(applied, "reject"), {"reason": "incomplete"}).status_code == 303


# --- Dangerous actions ----------------------------------------------------------------------------------

def test_offboarding_needs_the_organisation_name_typed(browser, approved):
    participant = approved.participant
    events = AuditEvent.objects.count()
    page = browser.get(workflow_url(participant, "offboard")).content.decode()
    assert 'name="confirm_name"' in page and 'class="danger default"' in page
    wrong = browser.post(workflow_url(participant, "offboard"), {"reason": "ended", "confirm_name": "Console"})
    assert wrong.status_code == 400
    assert "That is not the organisation&#x27;s name" in wrong.content.decode()
    participant.refresh_from_db()
    assert participant.status == Status.APPROVED and AuditEvent.objects.count() == events
    done = browser.post(workflow_url(participant, "offboard"), {"reason": "ended", "confirm_name": " console   BANK "})
    assert done.status_code == 303
    participant.refresh_from_db()
    assert participant.status == Status.OFFBOARDED


def test_bulk_offboarding_needs_the_count_typed_and_redirects(browser, onboard):
    (first, _), (second, _) = onboard(), onboard()
    data = {"action": "offboard_selected", "_selected_action": [first.participant.pk, second.participant.pk],
            "post": "yes", "reason": "wind-down"}
    page = browser.post(CHANGELIST, {**data, "confirm_count": "1"})
    assert page.status_code == 400 and "Type 2 (the number of participants selected)" in page.content.decode()
    assert 'class="danger default"' in page.content.decode()
    assert Participant.objects.filter(status=Status.OFFBOARDED).count() == 0
    done = browser.post(CHANGELIST, {**data, "confirm_count": "2"})
    assert done.status_code == 303 and done["Location"] == CHANGELIST
    assert Participant.objects.filter(status=Status.OFFBOARDED).count() == 2


def test_dangerous_buttons_are_red_and_revoke_sits_beside_rotate(browser, approved):
    html = browser.get(change_url(approved.participant)).content.decode()
    for slug in ("revoke-tokens", "suspend", "offboard"):
        assert f'class="button workflow-{slug} danger"' in html
    for slug in ("rotate-secret", "add-key"):
        assert f'class="button workflow-{slug}"' in html
    rotate, revoke, add_key = (html.index(f"workflow-{slug}") for slug in ("rotate-secret", "revoke-tokens",
                                                                              "add-key"))
    assert rotate < revoke < add_key
    for slug in ("suspend", "revoke-tokens"):
        assert 'class="danger default"' in browser.get(workflow_url(approved.participant, slug)).content.decode()


def test_reject_button_is_red(browser, organisation, admin_user):
    applied = services.participant_apply(organisation=organisation, role="LENDER", base_url="https://a.example",
                                         public_key=ec_key().public_pem(), acting_user=admin_user)
    html = browser.get(change_url(applied)).content.decode()
    assert 'class="button workflow-reject danger"' in html
    assert 'class="button workflow-approve"' in html


# --- Defects ----------------------------------------------------------------------------------------------

def test_removal_pages_list_what_they_remove(browser, onboard):
    creds, _ = onboard("LENDER", "Removal Bank")
    provider, _ = onboard("LOAN_AGENT", "Removal Provider")
    participant = creds.participant
    services.endpoint_add(participant=participant, url="https://second.example/api", acting_user=None)
    mapping = services.mapping_grant(client=participant, provider=provider.participant, scopes="ocen.loan",
                                     acting_user=None)
    endpoint = participant.endpoints.get(url__contains="second")
    pages = [
        browser.get(reverse("admin:registry_participant_endpoint_remove", args=[participant.pk, endpoint.pk])),
        browser.get(reverse("admin:registry_participant_mapping_remove", args=[participant.pk, mapping.pk])),
    ]
    endpoint_page, mapping_page = (page.content.decode() for page in pages)
    assert "Endpoint <code>https://second.example/api</code>" in endpoint_page
    assert "Resource mapping" in mapping_page and "ocen.loan" in mapping_page
    for html in (endpoint_page, mapping_page):
        assert "Public key <code>endpoints</code>" not in html
        assert "Public key <code>mappings</code>" not in html
        assert "Public key <code>" not in html


PRIVATE_PEM = ec_key().private_pem()


@pytest.mark.parametrize("material", [PRIVATE_PEM, ec_key().private_jwk()])
def test_a_refused_private_key_is_not_echoed_back(browser, approved, material):
    response = browser.post(workflow_url(approved.participant, "add-key"), {"public_key": material})
    html = response.content.decode()
    assert response.status_code == 400 and "private key material" in html
    assert "PRIVATE KEY" not in html
    private_parts = [json.loads(material)["d"]] if material.startswith("{") else material.splitlines()[1:-1]
    assert private_parts and not [part for part in private_parts if part in html]


def test_deeply_nested_key_material_is_an_error_not_a_500(browser, approved):
    response = browser.post(workflow_url(approved.participant, "add-key"), {"public_key": "[" * 30000})
    assert response.status_code == 400


def test_onboarding_with_a_private_key_does_not_echo_it(browser, signing_key):
    response = browser.post("/admin/registry/participant/onboard/", {
        "new_organisation_name": "Leaky Bank", "role": "LENDER", "base_url": "https://leaky.example",
        "public_key": PRIVATE_PEM})
    html = response.content.decode()
    assert response.status_code == 400 and "private key material" in html
    assert "PRIVATE KEY" not in html and PRIVATE_PEM.splitlines()[1] not in html
    assert "Leaky Bank" in html  # the rest of the form is kept
    assert not Participant.objects.exists()


def test_history_opens_the_participants_audit_events(browser, approved, onboard):
    other, _ = onboard("LOAN_AGENT", "Someone Else")
    participant = approved.participant
    history = browser.get(reverse("admin:registry_participant_history", args=[participant.pk]))
    assert history.status_code == 302
    assert history["Location"] == f"{AUDIT}?participant__id__exact={participant.pk}"
    events = browser.get(history["Location"])
    shown = list(events.context["cl"].result_list)
    assert shown and {event.participant_id for event in shown} == {participant.pk}
    assert other.participant.pk not in {event.participant_id for event in shown}


def test_organisation_history_opens_its_audit_events(browser, approved, onboard):
    onboard("LOAN_AGENT", "Someone Else")
    organisation = approved.participant.organisation
    history = browser.get(reverse("admin:registry_organisation_history", args=[organisation.pk]))
    assert history["Location"] == f"{AUDIT}?organisation__id__exact={organisation.pk}"
    shown = list(browser.get(history["Location"]).context["cl"].result_list)
    assert shown and {event.organisation_id for event in shown} == {organisation.pk}
    event_page = browser.get(reverse("admin:registry_auditevent_change", args=[shown[0].pk])).content.decode()
    assert "historylink" not in event_page


def test_header_title_navigation_and_view_site(browser, settings):
    index = browser.get("/admin/")
    html = index.content.decode()
    assert "OCEN Registry" in html and "Django administration" not in html
    assert index.context["site_url"] == "/registry/v1/docs"
    labels = [app["app_label"] for app in index.context["app_list"]]
    assert labels[:2] == ["registry", "authservice"]
    assert labels.index("registry") < labels.index("axes") and labels.index("registry") < labels.index("auth")
    settings.AUTHSERVICE_ADMIN_TITLE = "Sandbox Registry"
    assert "<title>Registry dashboard | Sandbox Registry</title>" in browser.get("/admin/").content.decode()


def test_times_show_their_zone(browser, approved):
    participant = approved.participant
    html = browser.get(change_url(participant)).content.decode()
    assert f"{participant.approved_at:%Y-%m-%d %H:%M} UTC" in html


def test_lockout_page_looks_like_the_admin(admin_user, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "registrar", "password": "wrong"})
    locked = client.post("/admin/login/", {"username": "registrar", "password": "x-Very-long-pass-1"})
    html = locked.content.decode()
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in html and "OCEN Registry" in html
    assert "registry/admin/registry.css" in html and "15 min" in html


# --- The dashboard ---------------------------------------------------------------------------------------

def test_dashboard_shows_the_registry_at_a_glance(browser, onboard, organisation, admin_user, settings):
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "FOUR_EYES": True}
    expiring_key = ec_key()
    soon = datetime.now(UTC) + timedelta(days=10)
    expiring, _ = onboard("LENDER", "Expiring Bank", material=expiring_key.certificate(not_after=soon))
    onboard("LOAN_AGENT", "Agent Co")
    waiting = services.participant_apply(organisation=organisation, role="KYC_PARTNER",
                                         base_url="https://kyc.example", public_key=ec_key().public_pem(),
                                         acting_user=admin_user)
    AuthFailureCounter.objects.create(key=1, failures=20, window_ends_at=time.time(),
                                      locked_until=time.time() + 300)
    AuthFailureCounter.objects.create(key=2, failures=3, window_ends_at=time.time(), locked_until=None)
    for client_id, until in ((expiring.client_id, time.time() + 300), ("long-gone", time.time() - 1)):
        services.client_auth_lockout_record(lockout=Lockout(
            kind=PAIR, client_id=client_id, address="203.0.113.9", failures=20, window_seconds=300,
            locked_until=until, endpoint="token"))
    call_command("verify_audit_log", stdout=io.StringIO())

    response = browser.get("/admin/")
    dashboard = response.context["dashboard"]
    html = response.content.decode()
    assert dict((status, count) for status, _, count in dashboard.by_status)[Status.APPROVED] == 2
    assert dict((role, count) for role, _, count in dashboard.by_role) == {"LENDER": 1, "LOAN_AGENT": 1,
                                                                          "KYC_PARTNER": 1}
    assert [entry.participant for entry in dashboard.queue] == [waiting]
    assert change_url(waiting) in html
    # four-eyes: whoever recorded the application may not approve it
    assert f"Waiting for review or approval by an operator other than {admin_user.get_username()}." in html
    assert [key.participant for key in dashboard.expiring_keys] == [expiring.participant]
    assert f"{soon:%Y-%m-%d %H:%M} UTC" in html
    assert dashboard.client_lockouts == 1
    assert [lockout.client_id for lockout in dashboard.client_lockout_details] == [expiring.client_id]
    assert "203.0.113.9" in html and "long-gone" not in html
    latest = AuditEvent.objects.order_by("-sequence").first()
    assert dashboard.recent_events[0].sequence == latest.sequence
    assert reverse("admin:registry_auditevent_change", args=[latest.pk]) in html
    assert dashboard.chain.head_sequence == latest.sequence
    assert dashboard.chain.last_verification.ok and dashboard.chain.last_verification.checked == latest.sequence
    assert 'class="chain-ok">passed' in html


def test_dashboard_says_when_the_chain_was_never_verified(browser, approved):
    assert "none recorded" in browser.get("/admin/").content.decode()


def test_dashboard_reports_a_failed_verification(browser, approved):
    AuditEvent.objects.filter(sequence=1).update(actor_label="mallory")
    with pytest.raises(Exception, match="chain broken"):
        call_command("verify_audit_log", stdout=io.StringIO())
    html = browser.get("/admin/").content.decode()
    assert "FAILED at #1" in html


def test_dashboard_queries_do_not_grow_with_the_registry(browser, onboard, organisation, admin_user,
                                                         django_assert_max_num_queries):
    for n in range(3):
        onboard("LENDER", f"Bank {n}", material=ec_key().certificate(not_after=datetime.now(UTC) + timedelta(days=5)))
    for role in ("KYC_PARTNER", "LOAN_AGENT", "COLLECTIONS_PARTNER"):
        services.participant_apply(organisation=organisation, role=role, base_url="https://q.example",
                                   public_key=ec_key().public_pem(), acting_user=admin_user)
    browser.get("/admin/")  # the session and permissions, warmed
    # session, user, and ten for the dashboard (one of them the stored audit verification,
    # read when the cache holds no note of the last one)
    with django_assert_max_num_queries(12):
        response = browser.get("/admin/")
    assert len(response.context["dashboard"].queue) == 3


# --- The audit log ---------------------------------------------------------------------------------------

def _age_events(participant, days: int) -> None:
    # The chain covers occurred_at; these tests read the list, never verify it.
    AuditEvent.objects.filter(participant=participant).update(
        occurred_at=datetime.now(UTC) - timedelta(days=days))


def test_audit_log_filters_by_date_range_and_exports_the_filtered_view(browser, onboard):
    old, _ = onboard("LENDER", "Old Bank")
    onboard("LOAN_AGENT", "New Bank")
    _age_events(old.participant, 40)
    day = (datetime.now(UTC) - timedelta(days=40)).date().isoformat()
    query = f"occurred_from={day}&occurred_to={day}"
    page = browser.get(f"{AUDIT}?{query}")
    shown = list(page.context["cl"].result_list)
    assert shown and {event.participant_id for event in shown} == {old.participant.pk}
    html = page.content.decode()
    assert f'value="{day}"' in html and "Audit chain:" in html
    export_url = page.context["export_url"]
    assert export_url.endswith(f"?{query}")

    export = browser.get(export_url)
    assert export.status_code == 200 and export["Content-Type"].startswith("text/csv")
    assert export.streaming and "attachment" in export["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert [int(row["sequence"]) for row in rows] == [event.sequence for event in shown]
    assert {row["participant_id"] for row in rows} == {str(old.participant.participant_id)}

    everything = list(csv.DictReader(io.StringIO(b"".join(browser.get(
        reverse("admin:registry_auditevent_export")).streaming_content).decode())))
    assert len(everything) == AuditEvent.objects.count()


def test_audit_log_export_keeps_action_participant_and_search_filters(browser, onboard):
    creds, _ = onboard("LENDER", "Filtered Bank")
    onboard("LOAN_AGENT", "Unrelated Co")
    query = f"action__exact=PARTICIPANT_APPROVED&participant__id__exact={creds.participant.pk}"
    rows = list(csv.DictReader(io.StringIO(b"".join(browser.get(
        f"{reverse('admin:registry_auditevent_export')}?{query}").streaming_content).decode())))
    assert len(rows) == 1 and rows[0]["action"] == "PARTICIPANT_APPROVED"
    rows = list(csv.DictReader(io.StringIO(b"".join(browser.get(
        f"{reverse('admin:registry_auditevent_export')}?q=unrelated").streaming_content).decode())))
    assert rows and {row["organisation"] for row in rows} == {"Unrelated Co"}


def test_audit_export_holds_no_secret_and_no_spreadsheet_formula(browser, onboard):
    creds, _ = onboard("LENDER", "=HYPERLINK(\"http://evil\")")
    rotated = browser.post(workflow_url(creds.participant, "rotate-secret"), {"grace_seconds": "0"})
    secret = secret_on(browser.get(rotated["Location"]))
    text = b"".join(browser.get(reverse("admin:registry_auditevent_export")).streaming_content).decode()
    assert creds.client_secret not in text and secret not in text
    organisations = {row["organisation"] for row in csv.DictReader(io.StringIO(text)) if row["organisation"]}
    assert organisations == {"'=HYPERLINK(\"http://evil\")"}


@pytest.mark.parametrize("query", ["occurred_from=yesterday", "occurred_to=2026-13-45", "occurred_from=2026-1-1"])
def test_a_bad_date_is_an_error_not_a_500(browser, approved, query):
    page = browser.get(f"{AUDIT}?{query}")
    assert page.status_code == 302 and "e=1" in page["Location"]
    export = browser.get(f"{reverse('admin:registry_auditevent_export')}?{query}")
    assert export.status_code == 400 and "not a date" in export.content.decode()


def test_audit_event_page_shows_a_readable_diff(browser, approved):
    services.participant_suspend(participant=approved.participant, reason="audit", acting_user=None)
    event = AuditEvent.objects.get(action=AuditAction.PARTICIPANT_SUSPENDED)
    html = browser.get(reverse("admin:registry_auditevent_change", args=[event.pk])).content.decode()
    assert '<table class="audit-diff">' in html
    assert '<tr><th>status</th><td class="old">APPROVED</td><td>→</td><td class="new">SUSPENDED</td></tr>' in html
    assert "<th>role</th>" not in html  # unchanged fields are not listed


def test_audit_export_needs_the_view_permission(approved, staff_without_permissions):
    assert staff_without_permissions.get(reverse("admin:registry_auditevent_export")).status_code == 403


@pytest.fixture
def staff_without_permissions(db):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("nobody", password="x-Very-long-pass-1", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


# --- The credentials page and the configuration file ----------------------------------------------------------

def _download(browser, url, **data):
    response = browser.post(url, data)
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    assert "no-store" in response["Cache-Control"]
    return json.loads(response.content)


def test_credentials_page_shows_the_service_urls_and_offers_the_configuration(browser, approved, settings,
                                                                              token_for):
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "ISSUER": "https://auth.registry.example"}
    participant = approved.participant
    posted = browser.post(workflow_url(participant, "rotate-secret"), {"grace_seconds": "0"})
    page = browser.get(posted["Location"])
    html = page.content.decode()
    secret = secret_on(page)
    for url in ("https://auth.registry.example", "https://auth.registry.example/oauth2/token",
                "https://auth.registry.example/oauth2/jwks", "https://auth.registry.example/registry/v1/"):
        assert f">{url}</code>" in html
    download_url = posted["Location"] + "download/"
    expected = {"participant_id": str(participant.participant_id), "client_id": approved.client_id,
                "issuer": "https://auth.registry.example",
                "token_endpoint": "https://auth.registry.example/oauth2/token",
                "jwks_uri": "https://auth.registry.example/oauth2/jwks",
                "registry_url": "https://auth.registry.example/registry/v1/"}
    assert _download(browser, download_url) == expected
    with_secret = _download(browser, download_url, include_secret="1")
    assert with_secret == {**expected, "client_secret": secret}
    participant.refresh_from_db()
    assert token_for(participant.client, with_secret["client_secret"]).status_code == 200

    again = browser.post(download_url, {"include_secret": "1"})
    assert again.status_code == 303 and again["Location"] == change_url(participant)
    assert secret not in browser.get(again["Location"]).content.decode()
    assert _rotations(participant) == 1


def test_configuration_without_secret_is_available_from_the_participant_page(browser, approved, organisation,
                                                                             admin_user):
    url = reverse("admin:registry_participant_configuration", args=[approved.participant.pk])
    assert url in browser.get(change_url(approved.participant)).content.decode()
    response = browser.get(url)
    body = json.loads(response.content)
    assert body["client_id"] == approved.client_id and "client_secret" not in body
    applied = services.participant_apply(organisation=organisation, role="LENDER", base_url="https://a.example",
                                         public_key=ec_key().public_pem(), acting_user=admin_user)
    assert browser.get(reverse("admin:registry_participant_configuration", args=[applied.pk])).status_code == 404


def test_download_is_post_only(browser, approved):
    posted = browser.post(workflow_url(approved.participant, "rotate-secret"), {"grace_seconds": "0"})
    assert browser.get(posted["Location"] + "download/").status_code == 405


# --- The participant list -----------------------------------------------------------------------------------------

def test_participant_list_has_short_ids_base_url_and_activity(browser, approved):
    participant = approved.participant
    html = browser.get(CHANGELIST).content.decode()
    full = str(participant.participant_id)
    assert f'<code title="{full}">{full[:8]}…</code>' in html
    assert f'data-copy-value="{full}"' in html and f'data-copy-value="{approved.client_id}"' in html
    assert "registry/admin/copy.js" in html
    assert participant.endpoints.get().url in html
    for column in ("column-approved_at_display", "column-last_activity_display", "column-base_url", "column-ids"):
        assert column in html


@pytest.mark.parametrize("term", ["console bank", "participant_id", "client_id", "org_id"])
def test_participant_search_by_name_and_ids(browser, approved, onboard, term):
    onboard("LOAN_AGENT", "Other Org")
    participant = approved.participant
    value = {"console bank": "console bank", "participant_id": str(participant.participant_id),
             "client_id": approved.client_id, "org_id": str(participant.organisation.org_id)}[term]
    found = list(browser.get(CHANGELIST, {"q": value}).context["cl"].result_list)
    assert found == [participant]
