"""A stolen database must not yield the service's signing key to a wordlist: the
key-encryption key is 32 random bytes, checked at start-up, and nothing stored is a
cheap function of it."""

import base64
import hashlib
import hmac
import os
import secrets
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from authservice.models import SigningKey
from authservice.signing_keys import key_cache, signing_key_ensure
from registry import audit
from registry.models import AuditEvent

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "correct horse battery staple"


def _manage(*args, **env):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AUTHSERVICE_"))}
    full_env.update(env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120, check=False)


def _hkdf(material: str, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material.encode())


def _wordlist_attack(token: str, key_ids: set[str], wordlist: list[str]) -> list[str]:
    """What a thief with a copy of the database and this project's source tries: each guess
    through the published derivations, against the stored ciphertext and audit key ids."""
    found = []
    for guess in wordlist:
        fernet_key = base64.urlsafe_b64encode(_hkdf(guess, b"ocen-authservice key-encryption-key"))
        try:
            Fernet(fernet_key).decrypt(token.encode())
        except InvalidToken:
            pass
        else:
            found.append(guess)
            continue
        audit_secret = _hkdf(guess, b"ocen-authservice audit-log key")
        if hashlib.sha256(audit_secret).hexdigest()[:8] in key_ids:
            found.append(guess)
    return found


def test_a_passphrase_key_encryption_key_never_protects_a_stored_key(db, settings):
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "KEY_ENCRYPTION_KEYS": [PASSPHRASE]}
    key_cache.clear()
    try:
        signing_key_ensure()
    except ImproperlyConfigured as exc:
        assert "AUTHSERVICE_KEY_ENCRYPTION_KEY" in str(exc)
    else:
        token = SigningKey.objects.get().private_key_encrypted
        key_ids = set(AuditEvent.objects.values_list("key_id", flat=True))
        wordlist = [f"guess number {n}" for n in range(2_000)] + [PASSPHRASE]
        found = _wordlist_attack(token, key_ids, wordlist)
        pytest.fail(f"a key was stored under a passphrase; the wordlist found {found}")
    assert not SigningKey.objects.exists()


@pytest.mark.ops
@pytest.mark.parametrize("kek", [PASSPHRASE, "x" * 44, "short-but-base64url", "0" * 64,
                                 "kek-0123456789abcdef0123456789abcdef0123456789",
                                 "correcthorsebatterystaplecorrecthorsebattery"])
def test_the_service_refuses_to_start_with_a_weak_key_encryption_key(tmp_path, kek):
    result = _manage("check", AUTHSERVICE_KEY_ENCRYPTION_KEY=kek, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert result.returncode != 0
    assert "AUTHSERVICE_KEY_ENCRYPTION_KEY" in result.stderr and "32 random bytes" in result.stderr, result.stderr
    assert kek not in result.stderr  # the message names the setting, never its value


@pytest.mark.ops
@pytest.mark.parametrize("kek", [Fernet.generate_key().decode(), secrets.token_urlsafe(32), secrets.token_hex(32),
                                 f"{Fernet.generate_key().decode()},{PASSPHRASE}"])
def test_random_keys_are_accepted_and_a_passphrase_only_to_decrypt(tmp_path, kek):
    result = _manage("check", AUTHSERVICE_KEY_ENCRYPTION_KEY=kek, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert result.returncode == 0, result.stderr
    if PASSPHRASE in kek:
        assert "authservice.W004" in result.stderr and "reencrypt_keys" in result.stderr


@pytest.mark.ops
def test_a_weak_audit_key_is_refused_at_start_up(tmp_path):
    result = _manage("check", AUTHSERVICE_AUDIT_KEY="audit passphrase", DATABASE_URL=f"sqlite:///{tmp_path / 'db'}")
    assert result.returncode != 0
    assert "AUTHSERVICE_AUDIT_KEY" in result.stderr and "32 random bytes" in result.stderr, result.stderr


def test_the_audit_key_id_is_not_a_hash_of_the_key(db, settings):
    """key_id is a MAC under a key of its own (derived apart), not a SHA-256 prefix of the
    audit key: the id alone confirms no guess of the audit key."""
    kek = Fernet.generate_key().decode()
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "KEY_ENCRYPTION_KEYS": [kek]}
    key_cache.clear()
    signing_key_ensure()
    event = AuditEvent.objects.latest("pk")
    audit_secret = _hkdf(kek, b"ocen-authservice audit-log key")
    assert event.key_id != hashlib.sha256(audit_secret).hexdigest()[:8]
    assert event.key_id != hmac.new(audit_secret, b"", hashlib.sha256).hexdigest()[:8]
    assert "intact" in _call("verify_audit_log", "--full")


def test_links_keyed_before_the_new_key_ids_still_verify(db, settings):
    """A chain written with the old ids (a deployment before this change) verifies."""
    kek = Fernet.generate_key().decode()
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "KEY_ENCRYPTION_KEYS": [kek]}
    key_cache.clear()
    signing_key_ensure()
    key = audit.audit_keys()[0]
    event = AuditEvent.objects.latest("pk")
    event.key_id = key.legacy_key_id
    event.hash = audit.link_digest(event, key)
    AuditEvent.objects.filter(pk=event.pk).update(key_id=event.key_id, hash=event.hash)
    assert "intact" in _call("verify_audit_log", "--full")


def _call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_a_checkpoint_signed_with_the_old_key_id_still_verifies(db, settings):
    kek = Fernet.generate_key().decode()
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "KEY_ENCRYPTION_KEYS": [kek]}
    key_cache.clear()
    signing_key_ensure()
    key = audit.audit_keys()[0]
    checkpoint = audit.Checkpoint(sequence=1, hash=AuditEvent.objects.get().hash, issued_at="2026-12-01T00:00:00Z")
    document = {"sequence": 1, "hash": checkpoint.hash, "issued_at": checkpoint.issued_at,
                "signature": {"alg": "HMAC-SHA256", "key_id": key.legacy_key_id,
                              "value": audit._checkpoint_mac(key, checkpoint, key.legacy_key_id)}}
    assert audit.checkpoint_verify(document) == checkpoint
    document["signature"]["key_id"] = key.key_id  # the same MAC under another id is not the same checkpoint
    with pytest.raises(audit.CheckpointInvalid):
        audit.checkpoint_verify(document)


def test_reencrypt_keys_moves_a_deployment_off_its_passphrase(db, settings):
    """The migration: the passphrase follows a random key, reencrypt_keys moves every key
    under the random one and says the signing key is to be replaced; then the passphrase
    can go and the service still signs."""
    from cryptography.fernet import MultiFernet

    from authservice.signing_keys import _fernet_key

    # A deployment from before: its key stored under the passphrase-derived key.
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "KEY_ENCRYPTION_KEYS": [Fernet.generate_key().decode()]}
    key_cache.clear()
    key, _ = signing_key_ensure()
    stored = SigningKey.objects.get(pk=key.pk)
    pem = MultiFernet([Fernet(_fernet_key(settings.AUTHSERVICE["KEY_ENCRYPTION_KEYS"][0]))]).decrypt(
        stored.private_key_encrypted.encode())
    SigningKey.objects.filter(pk=key.pk).update(
        private_key_encrypted=Fernet(_fernet_key(PASSPHRASE)).encrypt(pem).decode())

    new = Fernet.generate_key().decode()
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "KEY_ENCRYPTION_KEYS": [new, PASSPHRASE]}
    key_cache.clear()
    out, err = StringIO(), StringIO()
    call_command("reencrypt_keys", stdout=out, stderr=err)
    assert "Re-encrypted 1 key(s)" in out.getvalue()
    assert "rotate_signing_key" in err.getvalue() and PASSPHRASE not in err.getvalue()
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "KEY_ENCRYPTION_KEYS": [new]}
    key_cache.clear()
    assert key_cache.signer().kid == key.kid
    token = SigningKey.objects.get(pk=key.pk).private_key_encrypted
    assert _wordlist_attack(token, set(), [f"guess number {n}" for n in range(100)] + [PASSPHRASE]) == []
