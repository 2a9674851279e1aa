"""Secret rotations that cannot undo each other: a repeated or concurrent rotation,
or one during the previous rotation's grace period, is refused unless forced, so a
secret handed out is never silently replaced. (The PostgreSQL race is in
test_concurrency.py.)"""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from authservice.models import OAuthClient
from authservice.services import SECRET_ROTATION_COOLDOWN_SECONDS
from registry import services
from registry.models import AuditAction, AuditEvent


def _rotate(creds, admin_user, **options):
    return services.participant_rotate_secret(participant=creds.participant, acting_user=admin_user, **options)


def _age_last_rotation(creds, seconds: int) -> None:
    client = OAuthClient.objects.get(pk=creds.participant.client_id)
    OAuthClient.objects.filter(pk=client.pk).update(
        secret_rotated_at=client.secret_rotated_at - timedelta(seconds=seconds))


def test_a_repeated_rotation_is_refused_and_the_first_secret_stays_in_force(onboard, admin_user, token_for, audit):
    creds, _ = onboard()
    first = _rotate(creds, admin_user)
    trail = audit()
    with pytest.raises(ValidationError, match=r"rotated 0s ago .* Force the rotation"):
        _rotate(creds, admin_user)
    trail.assert_none()
    assert token_for(creds.participant.client, first.client_secret).status_code == 200


def test_a_rotation_after_the_cooldown_needs_no_force(onboard, admin_user, token_for):
    creds, _ = onboard()
    _rotate(creds, admin_user)
    _age_last_rotation(creds, SECRET_ROTATION_COOLDOWN_SECONDS)
    second = _rotate(creds, admin_user)
    assert token_for(creds.participant.client, second.client_secret).status_code == 200


def test_force_replaces_a_secret_rotated_moments_ago(onboard, admin_user, token_for, audit):
    creds, _ = onboard()
    first = _rotate(creds, admin_user)
    trail = audit()
    second = _rotate(creds, admin_user, force=True)
    trail.assert_one(action=AuditAction.CLIENT_SECRET_ROTATED, actor=admin_user, participant=creds.participant,
                     before={}, after={"client_id": creds.client_id, "grace_seconds": 0, "revoke_tokens": False,
                                       "force": True})
    assert token_for(creds.participant.client, first.client_secret).status_code == 401
    assert token_for(creds.participant.client, second.client_secret).status_code == 200


def test_a_rotation_during_a_grace_period_is_refused_even_after_the_cooldown(onboard, admin_user, token_for):
    creds, _ = onboard()
    new = _rotate(creds, admin_user, grace_seconds=3600)
    _age_last_rotation(creds, SECRET_ROTATION_COOLDOWN_SECONDS + 1)
    with pytest.raises(ValidationError, match="previous secret still works until"):
        _rotate(creds, admin_user, revoke_tokens=True)
    client = creds.participant.client
    assert token_for(client, creds.client_secret).status_code == 200
    assert token_for(client, new.client_secret).status_code == 200


def test_rotate_client_secret_command_refuses_then_forces_keeping_its_json_contract(onboard, admin_user,
                                                                                    token_for):
    creds, _ = onboard()
    participant_id = str(creds.participant.participant_id)
    first = json.loads(_call("rotate_client_secret", participant_id, "--json"))
    with pytest.raises(CommandError, match="Force the rotation"):
        _call("rotate_client_secret", participant_id, "--json")
    assert token_for(creds.participant.client, first["client_secret"]).status_code == 200
    forced = json.loads(_call("rotate_client_secret", participant_id, "--force", "--json"))
    assert set(forced) == {"participant_id", "client_id", "client_secret"}
    assert token_for(creds.participant.client, forced["client_secret"]).status_code == 200
    assert AuditEvent.objects.filter(action=AuditAction.CLIENT_SECRET_ROTATED).count() == 2


def test_admin_rotation_is_refused_twice_in_a_row_unless_force_is_ticked(onboard, admin_user, token_for):
    creds, _ = onboard()
    browser = Client()
    browser.force_login(admin_user)
    url = reverse("admin:registry_participant_workflow", args=[creds.participant.pk, "rotate-secret"])
    assert 'name="force"' in browser.get(url).content.decode()
    first = _secret_on(browser.post(url, {"grace_seconds": "0"}, follow=True))
    refused = browser.post(url, {"grace_seconds": "0"})
    assert refused.status_code == 400 and "Force the rotation" in refused.content.decode()
    assert token_for(creds.participant.client, first).status_code == 200
    forced = _secret_on(browser.post(url, {"grace_seconds": "0", "force": "on"}, follow=True))
    assert token_for(creds.participant.client, forced).status_code == 200
    assert token_for(creds.participant.client, first).status_code == 401


def _secret_on(response) -> str:
    assert response.status_code == 200
    return response.content.decode().split('id="client-secret">')[1].split("<")[0]


def _call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()
