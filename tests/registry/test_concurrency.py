"""Two administrators (or operators' commands) acting on the same thing at the same
moment, on a real PostgreSQL server: row locks and unique constraints make exactly one
of them win, and the other gets a clear refusal."""

import threading
import uuid
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection, connections
from oauth2_provider.models import get_application_model

from authservice.models import SigningKey
from authservice.signing_keys import signing_key_prepublish
from registry import services
from registry.audit import verify_chain
from registry.models import AuditAction, AuditEvent, Participant, Status
from tests.keymaterial import ec_key

pytestmark = [
    pytest.mark.usefixtures("scope_catalogue"),
    pytest.mark.postgres_only,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="row-lock races need concurrent writers; SQLite serialises every write"),
]


def _race(action, times: int = 2):
    barrier = threading.Barrier(times)
    outcomes: list[object] = []

    def worker():
        try:
            barrier.wait()
            outcomes.append(action())
        except Exception as exc:  # recorded; the tests say which outcomes are acceptable
            outcomes.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


@pytest.fixture
def applied(signing_key):
    organisation = services.organisation_create(legal_name="Race Bank", acting_user=None)
    return services.participant_apply(organisation=organisation, role="LENDER", base_url="https://race.example",
                                      public_key=ec_key().public_pem(), acting_user=None)


def test_concurrent_double_approval_creates_one_client(applied):
    outcomes = _race(lambda: services.participant_approve(participant=applied, acting_user=None), times=4)
    assert sum(isinstance(o, services.Credentials) for o in outcomes) == 1
    assert sum(isinstance(o, ValidationError) for o in outcomes) == 3
    assert get_application_model().objects.count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.PARTICIPANT_APPROVED).count() == 1
    assert verify_chain().ok


def test_concurrent_double_offboarding_is_all_or_nothing(applied):
    services.participant_approve(participant=applied, acting_user=None)
    outcomes = _race(lambda: services.participant_offboard(participant=applied, reason="race", acting_user=None,
                                                           four_eyes=False))
    assert sum(isinstance(o, dict) for o in outcomes) == 1
    participant = Participant.objects.get(pk=applied.pk)
    assert participant.status == Status.OFFBOARDED and participant.client is None
    assert AuditEvent.objects.filter(action=AuditAction.PARTICIPANT_OFFBOARDED).count() == 1


def test_concurrent_audit_appends_never_fork_the_chain(signing_key):
    outcomes = _race(lambda: services.organisation_create(legal_name=f"Org {threading.get_ident()}",
                                                          acting_user=None), times=6)
    assert not [o for o in outcomes if isinstance(o, ValidationError)]
    report = verify_chain()
    assert report.ok and report.checked == 6 + 1  # and the signing key's creation


def test_concurrent_approvals_and_organisation_writes_do_not_deadlock(signing_key):
    applicants = []
    for n in range(3):
        organisation = services.organisation_create(legal_name=f"Applicant {n}", acting_user=None)
        applicants.append(services.participant_apply(organisation=organisation, role="LENDER",
                                                     base_url=f"https://a{n}.example",
                                                     public_key=ec_key().public_pem(), acting_user=None))
    pending = list(applicants)
    lock = threading.Lock()

    def one_write():
        with lock:
            participant = pending.pop() if pending else None
        if participant is not None:
            return services.participant_approve(participant=participant, acting_user=None)
        return services.organisation_create(legal_name=f"Other {uuid.uuid4().hex[:8]}", acting_user=None)

    outcomes = _race(one_write, times=6)
    assert len(outcomes) == 6
    assert not [o for o in outcomes if isinstance(o, Exception)]
    assert verify_chain().ok


def test_opposite_mappings_granted_at_once_do_not_deadlock(signing_key):
    ends = []
    for name in ("Left", "Right"):
        organisation = services.organisation_create(legal_name=name, acting_user=None)
        ends.append(services.participant_apply(organisation=organisation, role="LENDER",
                                               base_url=f"https://{name.lower().replace(' ', '-')}.example",
                                               public_key=ec_key().public_pem(), acting_user=None))
    directions = [(ends[0], ends[1]), (ends[1], ends[0])] * 2
    lock = threading.Lock()

    def grant():
        with lock:
            client, provider = directions.pop()
        return services.mapping_grant(client=client, provider=provider, scopes="ocen.loan", acting_user=None,
                                      confirm_unapproved_provider=True)  # both ends still applied

    outcomes = _race(grant, times=4)
    assert not [o for o in outcomes if isinstance(o, Exception)]


def test_concurrent_secret_rotations_issue_exactly_one_secret(applied, token_for):
    services.participant_approve(participant=applied, acting_user=None)
    outcomes = _race(lambda: services.participant_rotate_secret(participant=applied, acting_user=None), times=3)
    issued = [o for o in outcomes if isinstance(o, services.Credentials)]
    refused = [o for o in outcomes if isinstance(o, ValidationError)]
    assert len(issued) == 1 and len(refused) == 2, outcomes
    assert all("Force the rotation" in " ".join(o.messages) for o in refused)
    client = get_application_model().objects.get(pk=Participant.objects.get(pk=applied.pk).client_id)
    assert token_for(client, issued[0].client_secret).status_code == 200
    assert AuditEvent.objects.filter(action=AuditAction.CLIENT_SECRET_ROTATED).count() == 1


def test_concurrent_prepublications_give_one_key_and_a_clean_refusal(signing_key):
    outcomes = _race(signing_key_prepublish, times=3)
    created = [o for o in outcomes if isinstance(o, tuple) and o[1]]
    others = [o for o in outcomes if not (isinstance(o, tuple) and o[1])]
    assert len(created) == 1, outcomes
    # A loser either waited for the winner's row (and returns it) or raced its insert (refused).
    for other in others:
        if isinstance(other, tuple):
            assert other[0] == created[0][0]
        else:
            assert isinstance(other, ValidationError), repr(other)
            assert "at the same moment" in " ".join(other.messages)
    assert SigningKey.objects.filter(state="NEXT").count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.SIGNING_KEY_PREPUBLISHED).count() == 1
    assert verify_chain().ok


def test_concurrent_rotate_signing_key_commands_never_print_an_integrity_error(signing_key):
    def command():
        try:
            call_command("rotate_signing_key", stdout=StringIO())
        except CommandError as exc:
            return exc
        return "ok"

    outcomes = _race(command, times=3)
    assert all(o == "ok" or isinstance(o, CommandError) for o in outcomes), outcomes
    assert SigningKey.objects.filter(state="NEXT").count() == 1


def _approved(name: str) -> Participant:
    url = f"https://{name.lower().replace(' ', '-')}.example"
    return services.participant_onboard(org_name=name, role="LENDER", base_url=url,
                                        public_key=ec_key().public_pem(), acting_user=None).participant


def _race_each(*actions):
    """Run each action in its own thread at the same moment; their outcomes."""
    barrier = threading.Barrier(len(actions))
    outcomes: list[object] = [None] * len(actions)

    def worker(index: int):
        try:
            barrier.wait()
            outcomes[index] = actions[index]()
        except Exception as exc:  # a deadlock or lock error is what is looked for
            outcomes[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def test_suspending_two_providers_mapped_to_each_other_at_once_cannot_deadlock(signing_key):
    # Each status change also marks stale the records of the clients mapped to it: A's
    # suspension touches B's client and B's touches A's. Rows are locked in one order.
    first, second = _approved("Mutual One"), _approved("Mutual Two")
    services.mapping_grant(client=first, provider=second, scopes="ocen.loan", acting_user=None)
    services.mapping_grant(client=second, provider=first, scopes="ocen.loan", acting_user=None)
    for _ in range(5):
        outcomes = _race_each(
            lambda: services.participant_suspend(participant=first, reason="race", acting_user=None),
            lambda: services.participant_suspend(participant=second, reason="race", acting_user=None))
        assert not any(isinstance(outcome, Exception) for outcome in outcomes), outcomes
        outcomes = _race_each(lambda: services.participant_reinstate(participant=first, acting_user=None),
                              lambda: services.participant_reinstate(participant=second, acting_user=None))
        assert not any(isinstance(outcome, Exception) for outcome in outcomes), outcomes
    assert verify_chain().ok


def test_renaming_an_organisation_while_its_participants_are_mapped_cannot_deadlock(signing_key):
    organisation = services.organisation_create(legal_name="Two Roles Bank", acting_user=None)
    lender, agent = (services.participant_approve(participant=services.participant_apply(
        organisation=organisation, role=role, base_url=f"https://{role.lower().replace('_', '-')}.two.example",
        public_key=ec_key().public_pem(), acting_user=None), acting_user=None).participant
        for role in ("LENDER", "LOAN_AGENT"))
    for name in ("ocen.loan", *(f"t{turn}" for turn in range(5))):
        services.scope_define(name=name, acting_user=None)
    for turn in range(5):
        outcomes = _race_each(
            lambda turn=turn: services.organisation_update(organisation=organisation,
                                                           legal_name=f"Two Roles Bank {turn}", acting_user=None),
            lambda turn=turn: services.mapping_grant(client=agent, provider=lender, scopes=f"ocen.loan t{turn}",
                                                     acting_user=None),
            lambda turn=turn: services.mapping_grant(client=lender, provider=agent, scopes=f"ocen.loan t{turn}",
                                                     acting_user=None))
        assert not any(isinstance(outcome, Exception) for outcome in outcomes), outcomes
    assert verify_chain().ok
