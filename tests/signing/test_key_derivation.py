"""``signing.kek.derive`` gives, for every purpose, the very key the separate derivations
it replaced gave: what they protect (stored private keys, audit links and their key ids,
credential hand-offs in flight) must still open after the upgrade. Each key is pinned
twice: against the old formula, and as bytes, so a change to both at once fails too."""

import base64
import hashlib
import hmac

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from registry import audit, credential_handoff
from signing import kek
from signing.kek import KeyPurpose, derive

SECRET = "a fixed secret, not a real key: ünïcode too"

# The four derivations as they were written before signing.kek (authservice/signing_keys.py,
# registry/audit.py twice, registry/credential_handoff.py), and what each gives for SECRET.
OLD_INFO_AND_KEY = {
    KeyPurpose.KEY_ENCRYPTION: (b"ocen-authservice key-encryption-key",
                                "db1a7c9a2ee8ab66d2cc79bd0979236ea40b2f262806ea71cd46f092ee100a72"),
    KeyPurpose.AUDIT_LOG: (b"ocen-authservice audit-log key",
                           "ca5741b269d787581d4ce1204991d4d7fe933575a122b47ad63eb0a821e2f9ca"),
    KeyPurpose.AUDIT_LOG_KEY_ID: (b"ocen-authservice audit-log key id",
                                  "43463a0cd8f1c964e69dccd4f9705bdb02ad0e9890c1c744c73cb8b7ff73a003"),
    KeyPurpose.CREDENTIAL_HANDOFF: (b"ocen-authservice admin credential hand-off",
                                    "12f95cf087069d1cedc3e2d3847c421825401e0ad2d1c124c9f7f8eae507587d"),
}


def _old_formula(material: str, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material.encode("utf-8"))


def test_every_purpose_of_today_has_a_pinned_key():
    assert set(KeyPurpose) == set(OLD_INFO_AND_KEY)


@pytest.mark.parametrize("purpose", list(KeyPurpose))
def test_derive_gives_the_old_formulas_key_byte_for_byte(purpose):
    info, pinned = OLD_INFO_AND_KEY[purpose]
    assert derive(purpose, SECRET) == _old_formula(SECRET, info)
    assert derive(purpose, SECRET).hex() == pinned


def test_purposes_give_unrelated_keys_from_one_secret():
    assert len({derive(purpose, SECRET) for purpose in KeyPurpose}) == len(KeyPurpose)


def test_a_private_key_stored_under_a_derived_key_encryption_key_still_decrypts(settings):
    stored = Fernet(base64.urlsafe_b64encode(_old_formula(SECRET, b"ocen-authservice key-encryption-key"))
                    ).encrypt(b"a stored private key")
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "KEY_ENCRYPTION_KEYS": [SECRET]}
    assert kek.key_encryption().decrypt(stored) == b"a stored private key"


def test_without_key_encryption_keys_the_secret_key_derived_one_still_decrypts(settings):
    settings.SECRET_KEY = SECRET
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "KEY_ENCRYPTION_KEYS": []}
    stored = Fernet(base64.urlsafe_b64encode(_old_formula(SECRET, b"ocen-authservice key-encryption-key"))
                    ).encrypt(b"a stored private key")
    assert kek.key_encryption().decrypt(stored) == b"a stored private key"


def test_a_fernet_key_given_as_key_encryption_key_is_used_as_it_is(settings):
    key = Fernet.generate_key().decode()
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "KEY_ENCRYPTION_KEYS": [key]}
    assert Fernet(key).decrypt(kek.key_encryption().encrypt(b"pem")) == b"pem"


def test_audit_keys_and_their_ids_are_those_of_the_old_derivation():
    key = audit.AuditKey.from_material(SECRET)
    id_key = _old_formula(SECRET, b"ocen-authservice audit-log key id")
    assert key.secret == _old_formula(SECRET, b"ocen-authservice audit-log key")
    assert key.key_id == hmac.new(id_key, b"audit-key-id", hashlib.sha256).hexdigest()[:8]
    assert key.legacy_key_id == hashlib.sha256(key.secret).hexdigest()[:8]


def test_a_credential_hand_off_sealed_before_the_upgrade_still_opens(settings):
    settings.SECRET_KEY = SECRET
    sealed = Fernet(base64.urlsafe_b64encode(_old_formula(SECRET, b"ocen-authservice admin credential hand-off"))
                    ).encrypt(b"hand-off")
    assert credential_handoff._fernet().decrypt(sealed) == b"hand-off"
