"""The scope catalogue: scopes are records, defined by ``define_scope`` (idempotent) or in
the admin; grants name only catalogue scopes (the service, ``grant_access`` and the
admin's grant page refuse the others, naming the closest known one); a grant adds to
what a mapping holds unless it replaces explicitly; the migration turned the scopes
already granted into catalogue entries."""

import importlib
import json
from io import StringIO

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from registry import services
from registry.models import AuditAction, AuditEvent, ResourceMapping, Scope
from tests.audit import AuditTrail

catalogue_migration = importlib.import_module("registry.migrations.0008_scope_catalogue_from_granted_scopes")


def _call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def pair(onboard):
    (lender, _), (agent, _) = onboard("LENDER", "Lender Ltd"), onboard("LOAN_AGENT", "Agent Ltd")
    return lender.participant, agent.participant


@pytest.fixture
def ocen_scopes(db):
    for name in ("ocen.loan", "ocen.offer"):
        services.scope_define(name=name, description=f"The {name} APIs", acting_user=None)


# --- define_scope -------------------------------------------------------------------------------

def test_define_scope_is_idempotent_and_says_what_it_did(db):
    trail = AuditTrail()
    assert _call("define_scope", "ocen.loan", "--description", "Loan APIs") == "Created scope ocen.loan: Loan APIs.\n"
    assert _call("define_scope", "ocen.loan") == "Unchanged scope ocen.loan: Loan APIs.\n"
    again = json.loads(_call("define_scope", "ocen.loan", "--description", "Loan APIs", "--json"))
    assert again == {"name": "ocen.loan", "description": "Loan APIs", "provider_roles": [], "outcome": "unchanged"}
    updated = json.loads(_call("define_scope", "ocen.loan", "--description", "Loans", "--provider-role", "LENDER",
                               "--json"))
    assert updated == {"name": "ocen.loan", "description": "Loans", "provider_roles": ["LENDER"],
                       "outcome": "updated"}
    assert Scope.objects.get(name="ocen.loan").description == "Loans"
    defined, changed = trail.new_events()
    assert defined.action == AuditAction.SCOPE_DEFINED and defined.after["name"] == "ocen.loan"
    assert changed.action == AuditAction.SCOPE_UPDATED
    assert changed.before == {"name": "ocen.loan", "description": "Loan APIs", "provider_roles": []}
    assert changed.after == {"name": "ocen.loan", "description": "Loans", "provider_roles": ["LENDER"]}


@pytest.mark.parametrize("name", ['ocen "loan"', "a" * 65, "back\\slash", ""])
def test_define_scope_refuses_a_malformed_name(db, name):
    catalogue = list(Scope.objects.values_list("name", flat=True))
    with pytest.raises(CommandError, match="not a valid scope"):
        _call("define_scope", name)
    assert list(Scope.objects.values_list("name", flat=True)) == catalogue and not AuditEvent.objects.exists()


# --- unknown scopes are refused ------------------------------------------------------------------

def test_grant_access_refuses_an_unknown_scope_naming_the_closest(pair, ocen_scopes):
    lender, agent = pair
    _call("grant_access", str(agent.participant_id), str(lender.participant_id), "--scopes", "ocen.loan")
    events = AuditEvent.objects.count()
    with pytest.raises(CommandError, match=r"Unknown scope 'ocen\.laon' \(did you mean 'ocen\.loan'\?\)"):
        _call("grant_access", str(agent.participant_id), str(lender.participant_id), "--scopes", "ocen.offer ocen.laon")
    assert ResourceMapping.objects.get(client=agent, provider=lender).scopes == "ocen.loan"
    assert AuditEvent.objects.count() == events


def test_the_service_refuses_unknown_scopes_and_writes_nothing(pair, admin_user):
    lender, agent = pair
    trail = AuditTrail()
    with pytest.raises(ValidationError, match=r"Unknown scope 'ocen\.loan'"):
        services.mapping_grant(client=agent, provider=lender, scopes="ocen.loan", acting_user=admin_user)
    assert not ResourceMapping.objects.filter(provider=lender).exists()
    trail.assert_none()


# --- grants merge --------------------------------------------------------------------------------

def test_a_grant_adds_to_the_scopes_a_mapping_holds(pair, ocen_scopes, admin_user, token_for):
    lender, agent = pair
    services.mapping_grant(client=agent, provider=lender, scopes="ocen.loan", acting_user=admin_user)
    trail = AuditTrail()
    mapping = services.mapping_grant(client=agent, provider=lender, scopes="ocen.offer", acting_user=admin_user)
    assert mapping.scopes == "ocen.loan ocen.offer" and mapping.scopes_before == "ocen.loan"
    trail.assert_one(action=AuditAction.MAPPING_GRANTED, actor=admin_user, participant=agent,
                     before={"scopes": "ocen.loan"},
                     after={"provider": str(lender.participant_id), "audience": lender.audience,
                            "scopes": "ocen.loan ocen.offer"})
    trail = AuditTrail()
    services.mapping_grant(client=agent, provider=lender, scopes="ocen.loan", acting_user=admin_user)
    trail.assert_none()  # already held: nothing to write


def test_replace_is_explicit_and_says_before_and_after(pair, ocen_scopes):
    lender, agent = pair
    ids = [str(agent.participant_id), str(lender.participant_id)]
    _call("grant_access", *ids, "--scopes", "ocen.loan")
    added = _call("grant_access", *ids, "--scopes", "ocen.offer")
    assert "may use ocen.loan ocen.offer at" in added and "Replaced" not in added
    replaced = _call("grant_access", *ids, "--scopes", "ocen.offer", "--replace")
    assert "Replaced: before ocen.loan ocen.offer; after ocen.offer." in replaced
    assert ResourceMapping.objects.get(client=agent, provider=lender).scopes == "ocen.offer"
    event = AuditEvent.objects.filter(action=AuditAction.MAPPING_GRANTED).first()  # newest first
    assert event.before == {"scopes": "ocen.loan ocen.offer"}
    assert event.after["scopes"] == "ocen.offer" and event.after["replaced"] is True


# --- the admin -----------------------------------------------------------------------------------

@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_the_admin_grant_page_picks_catalogue_scopes_and_adds(admin_client, pair, ocen_scopes):
    lender, agent = pair
    url = reverse("admin:registry_participant_workflow", args=[agent.pk, "grant-access"])
    page = admin_client.get(url).content.decode()
    assert 'value="ocen.loan"' in page and 'type="checkbox"' in page
    assert "admin-autocomplete" in page and "autocomplete.js" in page  # no dropdown of every participant
    assert "Lender Ltd" not in page
    first = admin_client.post(url, {"direction": "client", "other": lender.pk, "scopes": ["ocen.loan"],
                                    "confirm": "1"}, follow=True)
    assert "Granted ocen.loan." in first.content.decode()
    second = admin_client.post(url, {"direction": "client", "other": lender.pk, "scopes": ["ocen.offer"],
                                     "confirm": "1"}, follow=True)
    assert "Added: before ocen.loan; after ocen.loan ocen.offer." in second.content.decode()
    replaced = admin_client.post(url, {"direction": "client", "other": lender.pk, "scopes": ["ocen.offer"],
                                       "replace": "on", "confirm": "1"}, follow=True)
    assert "Replaced: before ocen.loan ocen.offer; after ocen.offer." in replaced.content.decode()


def test_the_admin_grant_page_refuses_a_scope_outside_the_catalogue(admin_client, pair, ocen_scopes):
    lender, agent = pair
    url = reverse("admin:registry_participant_workflow", args=[agent.pk, "grant-access"])
    events = AuditEvent.objects.count()
    response = admin_client.post(url, {"direction": "client", "other": lender.pk, "scopes": ["ocen.laon"],
                                       "confirm": "1"})
    assert response.status_code == 400 and "Select a valid choice" in response.content.decode()
    assert not ResourceMapping.objects.filter(provider=lender).exists()
    assert AuditEvent.objects.count() == events


def test_the_other_participant_is_found_by_search(admin_client, pair):
    lender, _ = pair
    response = admin_client.get("/admin/autocomplete/", {"app_label": "registry", "model_name": "resourcemapping",
                                                         "field_name": "provider", "term": "Lender"})
    assert response.status_code == 200
    assert [result["id"] for result in response.json()["results"]] == [str(lender.pk)]


def test_scopes_are_kept_in_the_admin_and_audited(admin_client, db):
    trail = AuditTrail()
    response = admin_client.post("/admin/registry/scope/add/", {"name": "ocen.offer", "description": "Offers",
                                                                "provider_roles": ["LENDER"]})
    assert response.status_code == 302
    scope = Scope.objects.get(name="ocen.offer")
    assert (scope.name, scope.description, scope.provider_roles) == ("ocen.offer", "Offers", ["LENDER"])
    assert [event.action for event in trail.new_events()] == [AuditAction.SCOPE_DEFINED]
    bad = admin_client.post("/admin/registry/scope/add/", {"name": 'bad "scope"', "description": ""})
    assert bad.status_code == 200 and "RFC 6749 scope token" in bad.content.decode()
    assert not Scope.objects.filter(name='bad "scope"').exists()
    listing = admin_client.get("/admin/registry/scope/?q=offer").content.decode()
    assert "ocen.offer" in listing
    assert admin_client.post(f"/admin/registry/scope/{scope.pk}/delete/").status_code == 403


# --- the migration -------------------------------------------------------------------------------

def test_the_migration_catalogues_granted_scopes_so_existing_mappings_keep_working(pair, admin_user, token_for,
                                                                                   onboard):
    lender, agent = pair
    # A mapping written before the catalogue existed, holding a scope it does not know.
    ResourceMapping.objects.create(client=agent, provider=lender, scopes="ocen.legacy ocen.loan")
    Scope.objects.all().delete()  # the catalogue as it starts: empty
    catalogue_migration.catalogue_granted_scopes(apps, None)
    assert set(Scope.objects.values_list("name", flat=True)) == {"registry.read", "ocen.legacy", "ocen.loan"}
    catalogue_migration.catalogue_granted_scopes(apps, None)  # again: nothing doubles
    assert Scope.objects.count() == 3
    # The mapping still grants, and re-granting its scopes is accepted.
    services.mapping_grant(client=agent, provider=lender, scopes="ocen.legacy", acting_user=admin_user)
    credentials, _ = onboard("KYC_PARTNER", "Newcomer Ltd")  # approval grants registry.read
    assert credentials.participant.mappings_as_client.get().scopes == "registry.read"
    agent_credentials = services.participant_rotate_secret(participant=agent, acting_user=admin_user)
    token = token_for(agent.client, agent_credentials.client_secret, scope="ocen.legacy", resource=lender.audience)
    assert token.status_code == 200, token.content
    assert token.json()["scope"] == "ocen.legacy"


def test_a_migrated_database_holds_the_registry_scope(db):
    """The test database was migrated: approval's scope is in the catalogue."""
    assert Scope.objects.filter(name="registry.read").exists()


def test_the_search_offers_no_offboarded_participant(admin_client, pair):
    lender, _ = pair
    services.participant_offboard(participant=lender, reason="gone", acting_user=None, four_eyes=False)
    response = admin_client.get("/admin/autocomplete/", {"app_label": "registry", "model_name": "resourcemapping",
                                                         "field_name": "provider", "term": "Lender"})
    assert response.status_code == 200 and response.json()["results"] == []
    listing = admin_client.get("/admin/registry/participant/", {"q": "Lender"}).content.decode()
    assert f"/admin/registry/participant/{lender.pk}/change/" in listing  # the list itself still finds it
