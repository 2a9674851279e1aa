"""Keys anyone can sign with are refused on every path in, and never authenticate.

An Ed25519 key of small order (or one not encoded canonically, or outside the
prime-order subgroup) verifies signatures made without any private key; an RSA
modulus with a small prime factor is factored at once. Each is tried as an attacker
would: register it, forge a private_key_jwt assertion from the public key alone, ask
for a token.
"""

import base64
import hashlib
import json
import time
import uuid
from io import StringIO

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from authservice.conf import authservice_settings
from ocen_sdk.remote import ASSERTION_TYPE
from registry import services
from registry.invalidation import participant_changed
from registry.key_material import parse_public_key
from registry.models import KeyFormat, Organisation, Participant, PublicKey
from tests.audit import AuditTrail
from tests.conftest import FORM, form
from tests.keymaterial import ec_key, rsa_key

P = 2**255 - 19


def _le(value: int) -> bytes:
    return value.to_bytes(32, "little")


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


# Encodings of the eight small-order points (and non-canonical encodings, y >= p or x = 0
# with its sign bit set), as published with libsodium's blocklist.
IDENTITY = _le(1)
SMALL_ORDER_POINTS = {
    "identity": IDENTITY,
    "order 2": _le(P - 1),
    "order 4 (y = 0)": _le(0),
    "order 8 (a)": _hex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    "order 8 (b)": _hex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    "identity, x sign bit set": _le(1 | 1 << 255),
    "identity as y = p + 1": _le(P + 1),
    "order 4 as y = p": _le(P),
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _ed25519_pem(point: bytes) -> str:
    key = ed25519.Ed25519PublicKey.from_public_bytes(point)
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _forge_ed25519(point: bytes):
    """Signatures valid under a small-order key, without a private key: R a small-order
    point and S = 0 verify whenever [k]A = -R; retried with fresh jtis as an attacker would."""
    candidates = [IDENTITY, point]

    def sign(message: bytes, attempt: int) -> bytes:
        return candidates[attempt % 2] + bytes(32)

    return sign


SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def _small_factor_rsa(small: int = 3):
    """n = small * q with q a large prime: the modulus is factored by trial division, so
    anyone computes the private exponent."""
    q = rsa.generate_private_key(public_exponent=65537, key_size=4096).private_numbers().p
    n, e = small * q, 65537
    d = pow(e, -1, (small - 1) * (q - 1))
    public = rsa.RSAPublicNumbers(e, n).public_key()

    def sign(message: bytes, attempt: int) -> bytes:
        size = (n.bit_length() + 7) // 8
        digest = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
        encoded = b"\x00\x01" + b"\xff" * (size - len(digest) - 3) + b"\x00" + digest
        return pow(int.from_bytes(encoded, "big"), d, n).to_bytes(size, "big")

    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return pem, sign


def _assertion(client_id: str, kid: str, alg: str, sign, attempt: int, audience: str) -> str:
    now = int(time.time())
    header = _b64(json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}).encode())
    claims = _b64(json.dumps({"iss": client_id, "sub": client_id, "aud": audience, "iat": now, "exp": now + 60,
                              "jti": uuid.uuid4().hex}).encode())
    signing_input = f"{header}.{claims}".encode()
    return f"{header}.{claims}.{_b64(sign(signing_input, attempt))}"


def _forged_token_statuses(client, client_id: str, kid: str, alg: str, sign, tries: int = 8) -> list[int]:
    audience = authservice_settings.ISSUER
    statuses = []
    for attempt in range(tries):
        response = client.post("/oauth2/token", form({
            "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": _assertion(client_id, kid, alg, sign, attempt, audience)}), content_type=FORM)
        statuses.append(response.status_code)
    return statuses


def _bad_keys():
    cases = [pytest.param(_ed25519_pem(point), "EdDSA", _forge_ed25519(point), id=f"Ed25519 {name}")
             for name, point in SMALL_ORDER_POINTS.items()]
    pem, sign = _small_factor_rsa(3)
    cases.append(pytest.param(pem, "RS256", sign, id="RSA n = 3 * q"))
    pem, sign = _small_factor_rsa(9973)
    cases.append(pytest.param(pem, "RS256", sign, id="RSA n = 9973 * q"))
    return cases


BAD_KEYS = _bad_keys()


@pytest.mark.parametrize(("material", "alg", "sign"), BAD_KEYS)
def test_onboard_refuses_a_key_anyone_can_sign_with(signing_key, tmp_path, client, material, alg, sign):
    key_file = tmp_path / "key.pem"
    key_file.write_text(material)
    trail = AuditTrail()
    try:
        out = StringIO()
        call_command("onboard", "--org-name", "Forger Ltd", "--role", "LOAN_AGENT", "--base-url",
                     "https://forger.example", "--public-key", str(key_file), "--json", stdout=out)
    except CommandError as exc:
        assert "key" in str(exc).lower()
    else:
        onboarded = json.loads(out.getvalue())
        statuses = _forged_token_statuses(client, onboarded["client_id"], onboarded["kid"], alg, sign)
        pytest.fail(f"onboarded with a forgeable key; forged private_key_jwt assertions answered {statuses}")
    assert not Participant.objects.exists()
    assert not Organisation.objects.exists()
    assert not PublicKey.objects.exists()
    trail.assert_none()


@pytest.mark.parametrize(("material", "alg", "sign"), BAD_KEYS[:2] + BAD_KEYS[-1:])
def test_a_forgeable_key_is_refused_on_every_path_in(onboard, admin_user, material, alg, sign):
    creds, _ = onboard("LENDER")
    with pytest.raises(ValidationError):
        services.public_key_add(participant=creds.participant, key_material=material, acting_user=admin_user)
    with pytest.raises(ValidationError):
        services.application_submit(role="LENDER", base_url="https://apply.example", public_key=material,
                                    new_organisation_name="Applicant Ltd", acting_user=admin_user)
    assert creds.participant.keys.count() == 1


def test_an_ed25519_jwk_of_small_order_is_refused():
    jwk = json.dumps({"kty": "OKP", "crv": "Ed25519", "x": _b64(IDENTITY)})
    with pytest.raises(ValidationError, match="small order"):
        parse_public_key(jwk)


def test_a_stored_forgeable_key_from_before_the_vetting_never_authenticates(onboard, client):
    """A row written before keys were vetted this way: the token endpoint skips it."""
    creds, _ = onboard("LOAN_AGENT")
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64(IDENTITY), "kid": "legacy", "alg": "EdDSA", "use": "sig"}
    PublicKey.objects.create(participant=creds.participant, kid="legacy", thumbprint="legacy-" + "0" * 57,
                             alg="EdDSA", kty="OKP", source_format=KeyFormat.JWK, public_jwk=jwk,
                             created_at=timezone.now())
    participant_changed(creds.participant)  # as the migration that brought it would
    statuses = _forged_token_statuses(client, creds.client_id, "legacy", "EdDSA", _forge_ed25519(IDENTITY), tries=2)
    assert statuses == [401, 401]


@pytest.mark.parametrize("exponent", [3, 17, 65535])
def test_rsa_exponents_below_65537_are_refused(exponent):
    n = rsa_key().private_key.private_numbers().public_numbers.n
    pem = rsa.RSAPublicNumbers(exponent, n).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(ValidationError, match="exponent"):
        parse_public_key(pem)


def test_honest_keys_still_pass():
    for key in (ec_key(), rsa_key()):
        assert parse_public_key(key.public_pem()).kid
    assert parse_public_key(ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()).kty == "OKP"


def test_an_ed25519_key_with_a_small_order_component_is_refused():
    """A real key plus a point of order 8: signatures verify differently under cofactored
    and cofactorless verification, so the participant could deny them."""
    from nacl.bindings import crypto_core_ed25519_add

    honest = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    mixed = crypto_core_ed25519_add(honest, SMALL_ORDER_POINTS["order 8 (a)"])
    with pytest.raises(ValidationError, match="small order"):
        parse_public_key(_ed25519_pem(mixed))


def test_an_rsa_modulus_of_two_close_primes_is_refused():
    """p and q a few thousand apart: Fermat's method factors n in one step."""
    p = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers().p
    q = p + 2000
    while any(pow(base, q - 1, q) != 1 for base in (2, 3, 5, 7)):  # the next probable prime
        q += 2
    pem = rsa.RSAPublicNumbers(65537, p * q).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(ValidationError, match="trivially factored"):
        parse_public_key(pem)


def test_the_migration_revokes_a_stored_forgeable_key_so_the_registry_stops_serving_it(onboard, token_for, client):
    """Providers verify request signatures with the keys the registry serves: a forgeable
    key registered before the vetting must leave it."""
    import importlib

    from django.apps import apps

    creds, _ = onboard("LOAN_AGENT")
    reader, _ = onboard("LENDER")
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64(IDENTITY), "kid": "legacy", "alg": "EdDSA", "use": "sig"}
    PublicKey.objects.create(participant=creds.participant, kid="legacy", thumbprint="legacy-" + "0" * 57,
                             alg="EdDSA", kty="OKP", source_format=KeyFormat.JWK, public_jwk=jwk)
    participant_changed(creds.participant)
    token = token_for(reader.participant.client, reader.client_secret, resource="urn:ocen:registry").json()
    url = f"/registry/v1/participants/{creds.participant.participant_id}/jwks"

    def served_kids():
        response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {token['access_token']}")
        assert response.status_code == 200
        return {key["kid"] for key in response.json()["keys"]}

    assert "legacy" in served_kids()
    migration = importlib.import_module("registry.migrations.0013_revoke_forgeable_public_keys")
    migration.revoke_forgeable_keys(apps, None)
    assert "legacy" not in served_kids()
    assert served_kids() == {creds.participant.keys.get(status="ACTIVE").kid}


def test_a_certificate_for_a_small_order_ed25519_key_is_refused():
    """The certificate is signed by a real key; the key it certifies is the identity point."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    issuer = ec_key().private_key
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forger.example")])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(ed25519.Ed25519PublicKey.from_public_bytes(IDENTITY))
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
                   .sign(issuer, hashes.SHA256()))
    with pytest.raises(ValidationError, match="small order"):
        parse_public_key(certificate.public_bytes(serialization.Encoding.PEM).decode())
