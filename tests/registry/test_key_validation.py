"""Every public-key rule, through the service that registers keys: refused with a
clear message and nothing written."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.exceptions import ValidationError

from registry import services
from registry.key_material import parse_public_key
from registry.models import AuditEvent, Participant, PublicKey
from tests.keymaterial import ec_key, ed25519_key, rsa_1024, rsa_key

NOW = datetime.now(UTC)


def _apply(organisation, admin_user, material, role="LENDER"):
    return services.participant_apply(organisation=organisation, role=role, base_url="https://api.example",
                                      public_key=material, acting_user=admin_user)


@pytest.mark.parametrize(("material", "message"), [
    (lambda: rsa_key().certificate(not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1)),
     "certificate expired"),
    (lambda: rsa_key().certificate(not_before=NOW + timedelta(days=2), not_after=NOW + timedelta(days=30)),
     "not valid before"),
    (lambda: rsa_1024().public_pem(), "at least 2048 bits"),
    (lambda: rsa_1024().certificate(), "at least 2048 bits"),
    (lambda: rsa_key().private_pem(), "private key material"),
    (lambda: ec_key().private_jwk(), "private key material"),
    (lambda: json.dumps({"kty": "oct", "k": "c2VjcmV0"}), "Symmetric"),
    (lambda: '{"kty": "RSA", "n": "not-base64!!", "e": "AQAB"', "not valid JSON"),
    (lambda: json.dumps({"kty": "RSA", "n": "AQAB"}), "malformed"),
    (lambda: json.dumps({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}), "malformed"),
    (lambda: json.dumps({"kty": "XYZ"}), "kty must be"),
    (lambda: json.dumps([1, 2]), "Expected a PEM"),
    (lambda: ec_key(ec.SECP384R1()).public_pem(), "P-256"),
    (lambda: rsa_key().public_jwk(alg="ES256"), "does not fit"),
    (lambda: rsa_key().public_jwk(use="enc"), "use must be 'sig'"),
    (lambda: "-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----", "not a valid PEM X.509"),
    (lambda: "-----BEGIN PUBLIC KEY-----\nnonsense\n-----END PUBLIC KEY-----", "not a valid PEM public key"),
    (lambda: "hello", "Expected a PEM"),
    (lambda: "", "required"),
])
def test_bad_keys_are_refused_and_nothing_is_written(organisation, admin_user, material, message):
    events_before = AuditEvent.objects.count()
    with pytest.raises(ValidationError) as excinfo:
        _apply(organisation, admin_user, material())
    assert message in " ".join(excinfo.value.messages)
    assert Participant.objects.count() == 0
    assert PublicKey.objects.count() == 0
    assert AuditEvent.objects.count() == events_before


def test_duplicate_key_is_refused(organisation, admin_user):
    pair = ec_key()
    _apply(organisation, admin_user, pair.public_pem(), role="LENDER")
    with pytest.raises(ValidationError, match="already registered"):
        _apply(organisation, admin_user, pair.public_jwk(), role="LOAN_AGENT")
    assert Participant.objects.count() == 1


@pytest.mark.parametrize("pair_factory", [rsa_key, ec_key, ed25519_key])
def test_accepted_formats_store_kid_thumbprint_and_alg(pair_factory):
    pair = pair_factory()
    for material in (pair.public_pem(), pair.public_jwk(), pair.certificate()):
        parsed = parse_public_key(material)
        assert parsed.thumbprint == pair.thumbprint()
        assert parsed.kid == parsed.thumbprint
        assert parsed.alg == {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}[parsed.kty]
        assert not {"d", "p", "q"} & set(parsed.public_jwk)


def test_certificate_keeps_validity_window_and_x5c():
    pair = rsa_key()
    parsed = parse_public_key(pair.certificate(not_after=NOW + timedelta(days=10)))
    assert parsed.source_format == "CERTIFICATE"
    assert parsed.not_after is not None and parsed.not_before is not None
    assert len(parsed.public_jwk["x5c"]) == 1


def test_given_kid_and_ps256_are_kept():
    parsed = parse_public_key(rsa_key().public_jwk(kid="lender-2026", alg="PS256"))
    assert parsed.kid == "lender-2026"
    assert parsed.alg == "PS256"
