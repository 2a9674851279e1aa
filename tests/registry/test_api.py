"""The registry REST API over HTTP: authentication, every endpoint, filters, errors,
ETag revalidation, and the OCEN reference-compatible view."""

import json
import re
import uuid
from datetime import UTC, datetime

import pytest

from authservice.services import client_create
from registry import services
from tests.conftest import basic

# Grants name scopes of the catalogue.
pytestmark = pytest.mark.usefixtures("scope_catalogue")


@pytest.fixture
def reader(onboard, token_for):
    """An approved participant's registry.read access token."""
    creds, _ = onboard("LOAN_AGENT", "Reader Co")
    token = token_for(creds.participant.client, creds.client_secret).json()["access_token"]
    return creds, token


@pytest.fixture
def api(client, reader):
    _, token = reader

    def get(path, **headers):
        return client.get(path, HTTP_AUTHORIZATION=f"Bearer {token}", **headers)

    return get


@pytest.fixture
def lender(onboard):
    creds, pair = onboard("LENDER", "Lender Bank")
    return creds.participant, pair


def test_missing_token_is_401_with_bearer_challenge(client, lender):
    response = client.get("/registry/v1/participants")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


@pytest.mark.parametrize("header", ["Bearer not-a-token", "Bearer ", "Basic abc", "Bearer a.b.c"])
def test_invalid_token_is_401(client, lender, header):
    response = client.get("/registry/v1/participants", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert "invalid_token" in response["WWW-Authenticate"]


def test_revoked_token_is_401(client, reader, lender):
    creds, token = reader
    client.post("/oauth2/revoke", f"token={token}", content_type="application/x-www-form-urlencoded",
                HTTP_AUTHORIZATION=basic(creds.client_id, creds.client_secret))
    assert client.get("/registry/v1/participants", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


def test_suspended_callers_token_is_401(client, reader, admin_user, lender):
    creds, token = reader
    services.participant_suspend(participant=creds.participant, reason="r", acting_user=admin_user)
    assert client.get("/registry/v1/participants", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


def test_token_for_another_audience_is_401(client, onboard, admin_user, token_for, lender):
    agent, _ = onboard("LOAN_AGENT", "Narrow Co")
    services.mapping_grant(client=agent.participant, provider=lender[0], scopes="ocen.loan", acting_user=admin_user)
    token = token_for(agent.participant.client, agent.client_secret,
                      resource=lender[0].audience).json()["access_token"]
    response = client.get("/registry/v1/participants", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401


def test_token_without_registry_read_is_403_insufficient_scope(client, onboard, admin_user, token_for, lender):
    agent, _ = onboard("LOAN_AGENT", "No Read Co")
    services.mapping_grant(client=agent.participant, provider=None, at_registry=True, scopes="registry.audit",
                           acting_user=admin_user)
    token = token_for(agent.participant.client, agent.client_secret, scope="registry.audit").json()["access_token"]
    response = client.get("/registry/v1/participants", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response["WWW-Authenticate"]


def test_list_paginates_and_filters(api, lender, onboard, admin_user):
    services.participant_offboard(participant=onboard("KYC_PARTNER", "Gone Ltd")[0].participant, reason="x",
                                  acting_user=admin_user, four_eyes=False)
    body = api("/registry/v1/participants").json()
    assert body["count"] == 2
    names = [p["organisation"]["legal_name"] for p in body["results"]]
    assert names == ["Lender Bank", "Reader Co"]
    assert api("/registry/v1/participants?role=LENDER").json()["count"] == 1
    assert api("/registry/v1/participants?status=APPROVED").json()["count"] == 2
    assert api("/registry/v1/participants?search=lender").json()["results"][0]["role"] == "LENDER"
    org_id = lender[0].organisation.org_id
    assert api(f"/registry/v1/participants?organisation={org_id}").json()["count"] == 1
    page = api("/registry/v1/participants?page_size=1&page=2").json()
    assert len(page["results"]) == 1 and page["previous"]


@pytest.mark.parametrize("query", ["role=BANKER", "status=OFFBOARDED", "organisation=nope", "page_size=0",
                                   "page_size=1000", "page=abc"])
def test_bad_filters_are_400(api, lender, query):
    response = api(f"/registry/v1/participants?{query}")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"


def test_page_past_the_end_is_404_json(api, lender):
    assert api("/registry/v1/participants?page=99").status_code == 404


def test_detail_has_endpoints_and_keys_as_jwk(api, lender):
    participant, pair = lender
    body = api(f"/registry/v1/participants/{participant.participant_id}").json()
    assert body["role"] == "LENDER" and body["status"] == "APPROVED"
    assert body["endpoints"] == [participant.endpoints.get().url]
    (key,) = body["keys"]
    assert key["kid"] == pair.thumbprint() and key["kty"] == "EC" and key["alg"] == "ES256"
    assert "d" not in key


def test_certificate_keys_carry_x5c(api, onboard):
    from tests.keymaterial import rsa_key

    pair = rsa_key()
    creds, _ = onboard("LENDER", "Cert Bank", material=pair.certificate())
    key = api(f"/registry/v1/participants/{creds.participant.participant_id}/jwks").json()["keys"][0]
    assert key["x5c"] and key["kty"] == "RSA"


def test_participant_jwks(api, lender, admin_user):
    participant, pair = lender
    from tests.keymaterial import rsa_key

    services.public_key_add(participant=participant, key_material=rsa_key().public_jwk(kid="next"),
                            acting_user=admin_user)
    jwks = api(f"/registry/v1/participants/{participant.participant_id}/jwks").json()
    assert [k["kid"] for k in jwks["keys"]] == [pair.thumbprint(), "next"]


@pytest.mark.parametrize("suffix", ["", "/jwks"])
def test_unknown_offboarded_and_malformed_ids(api, lender, admin_user, suffix):
    participant, _ = lender
    assert api(f"/registry/v1/participants/{uuid.uuid4()}{suffix}").status_code == 404
    assert api(f"/registry/v1/participants/not-a-uuid{suffix}").status_code == 400
    services.participant_offboard(participant=participant, reason="exit", acting_user=admin_user, four_eyes=False)
    response = api(f"/registry/v1/participants/{participant.participant_id}{suffix}")
    assert response.status_code == 404
    assert response.json()


def test_etag_revalidation_gives_304_until_the_participant_changes(api, lender, admin_user):
    participant, _ = lender
    path = f"/registry/v1/participants/{participant.participant_id}/jwks"
    first = api(path)
    etag = first["ETag"]
    assert etag and first["Cache-Control"] == "private, no-cache"
    revalidated = api(path, HTTP_IF_NONE_MATCH=etag)
    assert revalidated.status_code == 304
    assert revalidated.content == b""
    from tests.keymaterial import rsa_key

    services.public_key_add(participant=participant, key_material=rsa_key().public_pem(), acting_user=admin_user)
    changed = api(path, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag


def test_ocen_reference_view(api, lender, admin_user):
    participant, pair = lender
    body = api(f"/service/participant-roles/{participant.participant_id}").json()
    assert body["id"] == str(participant.participant_id)
    assert body["participantRole"] == "LENDER"
    assert body["participantRoleStatus"] == "APPROVED"
    assert body["isApproved"] is True
    assert body["approvedBy"] == "registry"
    assert admin_user.username not in json.dumps(body)  # no operator's name leaks to participants
    assert body["approvedOn"]
    assert body["baseUrl"] == participant.endpoints.get().url
    assert json.loads(body["publicKey"])["kid"] == pair.thumbprint()
    assert body["participant"]["participantName"] == "Lender Bank"
    assert body["participant"]["id"] == str(participant.organisation.org_id)


def test_ocen_reference_view_of_a_suspended_participant_has_no_key(api, lender, admin_user):
    participant, _ = lender
    services.participant_suspend(participant=participant, reason="review", acting_user=admin_user)
    body = api(f"/service/participant-roles/{participant.participant_id}").json()
    assert body["participantRoleStatus"] == "SUSPENDED" and body["isApproved"] is False
    assert body["publicKey"] is None


def test_no_secret_in_any_response(api, lender, reader):
    creds, _ = reader
    participant, _ = lender
    paths = ["/registry/v1/participants", f"/registry/v1/participants/{participant.participant_id}",
             f"/registry/v1/participants/{participant.participant_id}/jwks",
             f"/service/participant-roles/{participant.participant_id}",
             f"/service/participant-roles/{creds.participant.participant_id}"]
    for path in paths:
        text = api(path).content.decode()
        assert creds.client_secret not in text
        assert "secret" not in text.lower()
        assert '"d"' not in text


def test_service_account_token_may_read_the_registry(client, signing_key, token_for, lender):
    oauth_client, secret = client_create(name="ops")
    token = token_for(oauth_client, secret).json()["access_token"]
    assert client.get("/registry/v1/participants", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


def test_detail_and_list_publish_status_and_tokens_not_before(api, lender, admin_user, clock):
    participant, _ = lender
    path = f"/registry/v1/participants/{participant.participant_id}"
    assert api(path).json()["tokens_not_before"] is None
    clock.at(0.7)
    services.participant_revoke_tokens(participant=participant, reason="leak", acting_user=admin_user)
    expected = datetime.fromtimestamp(clock.second + 1, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = api(path).json()
    assert (body["status"], body["tokens_not_before"]) == ("APPROVED", expected)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["tokens_not_before"])
    listed = {p["participant_id"]: p for p in api("/registry/v1/participants").json()["results"]}
    assert listed[str(participant.participant_id)]["tokens_not_before"] == expected
    assert listed[str(participant.participant_id)]["status"] == "APPROVED"


def test_a_suspended_participants_keys_are_served_empty(api, lender, admin_user):
    participant, pair = lender
    detail = f"/registry/v1/participants/{participant.participant_id}"
    services.participant_suspend(participant=participant, reason="check", acting_user=admin_user)
    body = api(detail).json()
    assert body["status"] == "SUSPENDED" and body["keys"] == [] and body["tokens_not_before"]
    assert api(f"{detail}/jwks").json() == {"keys": []}
    suspended = api("/registry/v1/participants?status=SUSPENDED").json()["results"]
    assert [(p["participant_id"], p["keys"]) for p in suspended] == [(str(participant.participant_id), [])]
    services.participant_reinstate(participant=participant, acting_user=admin_user)
    assert [k["kid"] for k in api(f"{detail}/jwks").json()["keys"]] == [pair.thumbprint()]


def test_an_applicants_keys_are_served_empty(api, organisation, admin_user):
    from tests.keymaterial import ec_key

    applied = services.participant_apply(organisation=organisation, role="LENDER", base_url="https://a.example",
                                         public_key=ec_key().public_pem(), acting_user=admin_user)
    detail = f"/registry/v1/participants/{applied.participant_id}"
    body = api(detail).json()
    assert (body["status"], body["keys"], body["tokens_not_before"]) == ("APPLIED", [], None)
    assert api(f"{detail}/jwks").json() == {"keys": []}


def test_cursor_pagination_crawls_every_participant_once_while_others_are_added(api, onboard):
    for _ in range(7):
        onboard()
    seen, path, pages = [], "/registry/v1/participants?cursor=&page_size=3", 0
    while path:
        body = api(path).json()
        assert body["count"] is None  # the cursor counts nothing
        seen += [item["participant_id"] for item in body["results"]]
        if pages == 0:
            onboard()  # added during the crawl: after the cursor, so seen exactly once
        path = body["next"] and body["next"].split("testserver", 1)[-1]
        pages += 1
    assert len(seen) == len(set(seen))  # no duplicates
    expected = api("/registry/v1/participants?page=1&page_size=200").json()
    assert expected["count"] == len(seen)  # no gaps
    assert set(seen) == {item["participant_id"] for item in expected["results"]}


def test_legacy_page_numbers_still_work_with_a_count(api, onboard):
    for _ in range(3):
        onboard()
    body = api("/registry/v1/participants?page=1&page_size=2").json()
    assert body["count"] >= 3 and len(body["results"]) == 2 and "page=2" in body["next"]
    assert api("/registry/v1/participants?cursor=not-ours").status_code == 404


def test_numbered_pages_count_once_per_list_change_and_stay_exact(api, onboard):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for n in range(3):
        onboard(name=f"Counted Lending {n}")
    assert api("/registry/v1/participants?search=counted&page_size=2").json()["count"] == 3
    with CaptureQueriesContext(connection) as queries:
        second = api("/registry/v1/participants?search=counted&page_size=2&page=2").json()
    assert second["count"] == 3 and len(second["results"]) == 1
    assert not [query for query in queries.captured_queries if "COUNT(" in query["sql"]]
    onboard(name="Counted Lending 3")  # a list change: counted again
    assert api("/registry/v1/participants?search=counted&page_size=2&page=2").json()["count"] == 4


def test_search_matches_part_of_a_name_in_any_case(api, onboard):
    onboard(name="Zebra Microfinance")
    names = [item["organisation"]["legal_name"] for item in api(
        "/registry/v1/participants?search=CROFIN").json()["results"]]
    assert names == ["Zebra Microfinance"]


def test_search_finds_digits_anywhere_in_the_name(api, onboard):
    for name in ("Scale Org 0012345", "Scale Org 0123450", "Scale Org 0099999"):
        onboard(name=name)
    body = api("/registry/v1/participants?search=12345").json()
    assert body["count"] == 2
    assert [item["organisation"]["legal_name"] for item in body["results"]] == ["Scale Org 0012345",
                                                                                  "Scale Org 0123450"]


def test_search_takes_like_wildcards_literally(api, onboard):
    onboard(name="100% Finance")
    onboard(name="Abc Lending")
    assert [item["organisation"]["legal_name"] for item in api(
        "/registry/v1/participants?search=0% f").json()["results"]] == ["100% Finance"]
    assert api("/registry/v1/participants?search=a_c").json()["results"] == []


def test_search_with_the_cursor_pages_through_matches_without_a_count(api, onboard):
    for n in range(3):
        onboard(name=f"Needle Finance {n}")
    onboard(name="Haystack Bank")
    first = api("/registry/v1/participants?search=needle&cursor=&page_size=2").json()
    second = api(first["next"]).json()
    names = [item["organisation"]["legal_name"] for item in first["results"] + second["results"]]
    assert first["count"] is None and second["next"] is None
    assert sorted(names) == ["Needle Finance 0", "Needle Finance 1", "Needle Finance 2"]


@pytest.mark.parametrize("term", ["ab", "  ab  ", "é", "...", "%%%", "_ _", "a" * 101, "ab\x00c"])
def test_search_too_short_without_a_letter_or_digit_or_with_nul_is_400(api, lender, term):
    response = api("/registry/v1/participants", data={"search": term})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert list(response.json()) == ["search"]


def test_an_empty_search_is_no_filter(api, lender):
    assert api("/registry/v1/participants?search=").json()["count"] == 2
