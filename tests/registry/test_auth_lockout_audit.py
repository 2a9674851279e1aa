"""The start of every lockout of failed client authentication is one audit event."""

from unittest import mock

from registry.audit import verify_chain
from registry.models import AuditAction
from tests.conftest import FORM, basic, form

ATTACKER = "127.0.0.2"


def _token(client, client_id: str, secret: str, address: str = ATTACKER):
    return client.post("/oauth2/token", form({"grant_type": "client_credentials"}), content_type=FORM,
                       HTTP_AUTHORIZATION=basic(client_id, secret), REMOTE_ADDR=address)


def test_a_lockout_is_audited_once_when_it_starts(client, onboard, audit):
    credentials, _ = onboard()
    trail = audit()
    for n in range(200):
        _token(client, credentials.client_id, f"guess-{n}")
    (event,) = trail.new_events()
    assert event.action == AuditAction.CLIENT_AUTH_LOCKOUT
    assert event.participant_id == credentials.participant.pk
    assert event.actor is None and event.actor_label == "system"
    assert event.before == {}
    assert event.after == {"scope": "client_at_address", "client_id": credentials.client_id, "address": ATTACKER,
                           "failures": 20, "window_seconds": 300, "locked_until": mock.ANY,
                           "endpoint": "/oauth2/token"}
    assert verify_chain().ok


def test_each_new_lockout_is_audited_and_an_unknown_client_id_names_no_participant(client, signing_key, audit,
                                                                                  settings, clock):
    settings.REDIS_URL = ""  # the database store, which follows the frozen clock
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "AUTH_FAILURE_LIMIT": 2, "AUTH_FAILURE_LIMIT_PER_ADDRESS": 4,
                            "AUTH_FAILURE_WINDOW": 60, "AUTH_LOCKOUT_SECONDS": 60}
    trail = audit()
    for n in range(10):  # four client_ids, one failure each: the address is locked out
        _token(client, f"sprayed-{n}", "wrong")
    clock.at(61)
    for _ in range(10):  # then one client_id, twice: that pair is locked out
        _token(client, "no-such-client", "wrong")
    events = trail.new_events()
    assert [(e.after["scope"], e.after["client_id"], e.participant_id) for e in events] == [
        ("address", None, None), ("client_at_address", "no-such-client", None)]
    assert events[0].after["failures"] == 4
