"""The registry admin through HTTP: thin pages over the services, readable errors,
one-time secrets, confirmation before removal, permissions, CSRF and lockout."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from registry import services
from registry.models import AuditAction, AuditEvent, Organisation, Participant, Status
from tests.keymaterial import ec_key, rsa_1024

ONBOARD = "/admin/registry/participant/onboard/"


def workflow_url(participant, slug):
    return reverse("admin:registry_participant_workflow", args=[participant.pk, slug])


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def approver_client(db):
    """A second administrator: four-eyes lets no one approve what they recorded."""
    user = get_user_model().objects.create_superuser("approver", "approver@example.org", "x-Very-long-pass-2")
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.fixture
def one_operator(settings):
    """For tests about a page, not four-eyes (tests/registry/test_four_eyes.py): one
    administrator may act alone."""
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "FOUR_EYES": False}


@pytest.fixture
def staff(db):
    call_command("create_admin_groups", verbosity=0)

    def make(group: str):
        user = get_user_model().objects.create_user(group.split()[-1], password="x-Very-long-pass-1", is_staff=True)
        user.groups.add(Group.objects.get(name=group))
        browser = Client()
        browser.force_login(user)
        return browser

    return make


@pytest.fixture
def applied(organisation, admin_user, signing_key):
    return services.participant_apply(organisation=organisation, role="LENDER", base_url="https://a.example",
                                      public_key=ec_key().public_pem(), acting_user=admin_user)


def test_admin_requires_staff_login(client, db):
    response = client.get("/admin/registry/participant/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_onboard_form_records_an_application(admin_client, signing_key):
    response = admin_client.post(ONBOARD, {
        "new_organisation_name": "Form Bank", "website": "https://form.example", "role": "LENDER",
        "base_url": "https://api.form.example", "public_key": ec_key().public_pem(), "confirm": "1",
    })
    participant = Participant.objects.get()
    assert response.status_code == 303
    assert response["Location"] == reverse("admin:registry_participant_change", args=[participant.pk])
    assert participant.status == Status.APPLIED
    assert participant.organisation.legal_name == "Form Bank"


@pytest.mark.parametrize(("fields", "message"), [
    ({"public_key": "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----"}, "private key material"),
    ({"public_key": rsa_1024().public_pem()}, "at least 2048 bits"),
    ({"base_url": "http://plain.example"}, "must use https"),
    ({"new_organisation_name": ""}, "Choose an existing organisation"),
])
def test_onboard_form_shows_errors_and_writes_nothing(admin_client, signing_key, fields, message):
    data = {"new_organisation_name": "Bad Bank", "role": "LENDER", "base_url": "https://bad.example",
            "public_key": ec_key().public_pem(), "confirm": "1", **fields}
    response = admin_client.post(ONBOARD, data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Participant.objects.exists() and not Organisation.objects.exists()


def test_approve_shows_the_secret_once(admin_client, approver_client, applied, token_for):
    page = approver_client.get(workflow_url(applied, "approve"))
    assert page.status_code == 200 and b"shows the client secret once" in page.content
    response = approver_client.post(workflow_url(applied, "approve"), {"confirm": "1"}, follow=True)
    assert response.status_code == 200 and response.redirect_chain[0][1] == 303
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    applied.refresh_from_db()
    secret = html.split('id="client-secret">')[1].split("<")[0]
    assert applied.client.client_id in html
    assert token_for(applied.client, secret).status_code == 200
    detail = admin_client.get(reverse("admin:registry_participant_change", args=[applied.pk]))
    assert detail.status_code == 200
    assert applied.client.client_id in detail.content.decode()
    assert secret not in detail.content.decode()
    again = approver_client.post(workflow_url(applied, "approve"), {"confirm": "1"})
    assert again.status_code == 400
    assert "cannot become approved" in again.content.decode()


def test_offboarding_confirmation_lists_what_goes(admin_client, onboard, one_operator):
    creds, pair = onboard("LENDER", "Exit Bank")
    participant = creds.participant
    page = admin_client.get(workflow_url(participant, "offboard")).content.decode()
    assert creds.client_id in page and pair.thumbprint() in page and participant.endpoints.get().url in page
    missing_reason = admin_client.post(workflow_url(participant, "offboard"), {"confirm": "1"})
    assert missing_reason.status_code == 400
    participant.refresh_from_db()
    assert participant.status == Status.APPROVED
    done = admin_client.post(workflow_url(participant, "offboard"), {"confirm": "1", "reason": "licence ended",
                                                                     "confirm_name": "Exit Bank"})
    assert done.status_code == 303
    participant.refresh_from_db()
    assert participant.status == Status.OFFBOARDED


def test_service_refusals_are_readable_errors(admin_client, onboard):
    creds, _ = onboard()
    key = creds.participant.keys.get()
    response = admin_client.post(reverse("admin:registry_participant_key_revoke", args=[creds.participant.pk, key.pk]),
                                 {"confirm": "1"})
    assert response.status_code == 400
    assert "must keep at least one active key" in response.content.decode()


def test_bulk_offboard_asks_first(admin_client, onboard, one_operator):
    (first, _), (second, _) = onboard(), onboard()
    ids = [first.participant.pk, second.participant.pk]
    confirm = admin_client.post("/admin/registry/participant/", {"action": "offboard_selected",
                                                                 "_selected_action": ids})
    assert confirm.status_code == 200 and b"Yes, offboard them" in confirm.content
    assert Participant.objects.filter(status=Status.OFFBOARDED).count() == 0
    admin_client.post("/admin/registry/participant/", {"action": "offboard_selected", "_selected_action": ids,
                                                      "post": "yes", "reason": "wind-down", "confirm_count": "2"})
    assert Participant.objects.filter(status=Status.OFFBOARDED).count() == 2


def test_bulk_offboard_without_a_reason_shows_the_page_again_with_the_error(admin_client, onboard, one_operator):
    (first, _), (second, _) = onboard(), onboard()
    ids = [first.participant.pk, second.participant.pk]
    count = AuditEvent.objects.count()
    response = admin_client.post("/admin/registry/participant/", {"action": "offboard_selected",
                                                                  "_selected_action": ids, "post": "yes",
                                                                  "reason": "  "})
    assert response.status_code == 400
    page = response.content.decode()
    assert "This field is required." in page and "Yes, offboard them" in page
    for participant in (first.participant, second.participant):  # the selection is kept
        assert f'name="_selected_action" value="{participant.pk}"' in page
    assert Participant.objects.filter(status=Status.OFFBOARDED).count() == 0
    assert AuditEvent.objects.count() == count


def test_list_has_badges_filters_and_search(admin_client, onboard):
    creds, _ = onboard("LENDER", "Searchable Bank")
    page = admin_client.get("/admin/registry/participant/?status__exact=APPROVED").content.decode()
    assert "status-badge" in page and "Searchable Bank" in page
    for term in (str(creds.participant.participant_id), creds.client_id, "searchable"):
        assert "Searchable Bank" in admin_client.get(f"/admin/registry/participant/?q={term}").content.decode()


def test_operator_may_approve_but_not_offboard(staff, applied):
    operator = staff("Registry operators")
    assert operator.post(workflow_url(applied, "approve"), {"confirm": "1"}).status_code == 303
    assert operator.get(workflow_url(applied, "offboard")).status_code == 403
    assert b"offboard_selected" not in operator.get("/admin/registry/participant/").content


def test_auditor_may_only_look(staff, applied):
    auditor = staff("Registry auditors")
    assert auditor.get(reverse("admin:registry_participant_change", args=[applied.pk])).status_code == 200
    assert auditor.get(workflow_url(applied, "approve")).status_code == 403
    assert auditor.get(ONBOARD).status_code == 403
    assert auditor.get("/admin/registry/auditevent/").status_code == 200


def test_audit_log_is_read_only_even_for_superusers(admin_client, applied):
    event = AuditEvent.objects.first()
    assert admin_client.get("/admin/registry/auditevent/add/").status_code == 403
    assert admin_client.post(f"/admin/registry/auditevent/{event.pk}/delete/").status_code == 403
    assert admin_client.post(f"/admin/registry/auditevent/{event.pk}/change/", {"action": "X"}).status_code == 403
    listing = admin_client.get(f"/admin/registry/auditevent/?action__exact={AuditAction.PARTICIPANT_APPLIED}")
    assert str(applied.organisation) in listing.content.decode()


def test_workflow_posts_need_csrf(admin_user, applied):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    assert browser.post(workflow_url(applied, "approve"), {"confirm": "1"}).status_code == 403
    applied.refresh_from_db()
    assert applied.status == Status.APPLIED


def test_organisation_admin_goes_through_the_service(admin_client, db):
    admin_client.post("/admin/registry/organisation/add/", {"legal_name": "Admin Org", "website": "",
                                                           "contact_email": "", "contact_phone": ""})
    assert AuditEvent.objects.get().action == AuditAction.ORGANISATION_CREATED
    duplicate = admin_client.post("/admin/registry/organisation/add/", {"legal_name": "Admin Org"})
    assert duplicate.status_code == 200 and b"already exists" in duplicate.content
    assert Organisation.objects.count() == 1


def test_oauth_clients_are_not_editable_in_the_admin(admin_client, onboard):
    creds, _ = onboard()
    pk = creds.participant.client.pk
    assert admin_client.get(f"/admin/authservice/oauthclient/{pk}/change/").status_code == 200
    response = admin_client.post(f"/admin/authservice/oauthclient/{pk}/change/", {"client_secret": "x"})
    assert response.status_code == 403


def test_repeated_failed_logins_lock_the_account(admin_user):
    browser = Client()
    for _ in range(5):
        browser.post("/admin/login/", {"username": "registrar", "password": "wrong"})
    locked = browser.post("/admin/login/?next=/admin/", {"username": "registrar", "password": "x-Very-long-pass-1"})
    assert locked.status_code == 429
    assert "_auth_user_id" not in browser.session
