"""Activity per participant through the token endpoint: last token issued, tokens issued
and failed client authentications in the last 24 hours, from hourly counters (not a row
per token), shown on the participant's admin page."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from registry import activity
from registry.activity import participant_activity
from registry.models import ParticipantActivity
from tests.conftest import FORM, basic, form


@pytest.fixture(autouse=True)
def _no_leftover_counts(db):
    activity.flush()  # counts other tests left in this process name clients gone with their rows: dropped
    yield
    activity.flush()


def test_tokens_issued_and_failed_authentications_are_counted(onboard, token_for):
    (credentials, _), (other, _) = onboard(), onboard()
    participant = credentials.participant
    assert participant_activity(participant) == {"last_token_at": None, "issued_24h": 0, "failed_24h": 0}
    started = timezone.now()
    for _ in range(2):
        assert token_for(participant.client, credentials.client_secret).status_code == 200
    for _ in range(3):
        assert token_for(participant.client, "wrong-secret").status_code == 401
    assert token_for(participant.client, credentials.client_secret, scope="ocen.none").status_code == 400  # no count
    assert token_for(other.participant.client, other.client_secret).status_code == 200

    counts = participant_activity(participant)
    assert counts["issued_24h"] == 2 and counts["failed_24h"] == 3
    assert started <= counts["last_token_at"] <= timezone.now()
    assert participant_activity(other.participant)["issued_24h"] == 1
    # One row per participant and hour, whatever the number of tokens.
    assert ParticipantActivity.objects.filter(participant=participant).count() == 1


def test_unknown_client_ids_add_no_rows(client, db, signing_key):
    for n in range(5):
        response = client.post("/oauth2/token", form({"grant_type": "client_credentials"}), content_type=FORM,
                               HTTP_AUTHORIZATION=basic(f"guessed-{n}", "secret"))
        assert response.status_code == 401
    activity.flush()
    assert not ParticipantActivity.objects.exists()


def test_counts_are_batched_in_memory_until_flushed(onboard, token_for, monkeypatch):
    monkeypatch.setattr(activity, "FLUSH_SECONDS", 3600)
    credentials, _ = onboard()
    activity.flush()
    for _ in range(3):
        assert token_for(credentials.participant.client, credentials.client_secret).status_code == 200
    assert not ParticipantActivity.objects.filter(participant=credentials.participant).exists()  # no write yet
    assert participant_activity(credentials.participant)["issued_24h"] == 3  # reading flushes first
    row = ParticipantActivity.objects.get(participant=credentials.participant)
    assert row.issued == 3 and row.failed == 0


def test_flushes_add_to_the_hour_and_older_hours_leave_the_window(onboard, token_for):
    credentials, _ = onboard()
    participant = credentials.participant
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    ParticipantActivity.objects.create(participant=participant, hour=now, issued=5, failed=1,
                                       last_token_at=now - timedelta(hours=1))
    ParticipantActivity.objects.create(participant=participant, hour=now - timedelta(hours=30), issued=100,
                                       failed=100, last_token_at=now - timedelta(hours=30))
    assert token_for(participant.client, credentials.client_secret).status_code == 200
    counts = participant_activity(participant)
    assert counts["issued_24h"] == 6 and counts["failed_24h"] == 1  # the 30-hour-old bucket is out
    assert counts["last_token_at"] > now - timedelta(hours=1)  # the newer time wins the merge


def test_the_participant_page_shows_the_activity(onboard, token_for, admin_user, client):
    credentials, _ = onboard()
    participant = credentials.participant
    token_for(participant.client, credentials.client_secret)
    token_for(participant.client, "wrong")
    client.force_login(admin_user)
    page = client.get(reverse("admin:registry_participant_change", args=[participant.pk])).content.decode()
    assert '<span id="activity-issued">1</span> issued' in page
    assert '<span id="activity-failed">1</span> failed client authentications' in page


def test_a_failing_recorder_does_not_fail_the_token_request(onboard, token_for, settings):
    credentials, _ = onboard()

    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "TOKEN_ACTIVITY_RECORDER": "tests.registry.test_activity.broken"}
    assert token_for(credentials.participant.client, credentials.client_secret).status_code == 200


def broken(*, client_id: str, issued: bool) -> None:
    raise RuntimeError("the recorder is down")
