"""ocen_sdk.jws: round trips, interop with an independent implementation (joserfc)
in both directions for every algorithm, and a typed error for every rejection."""

import base64
import functools
import json

import pytest
from joserfc import jws as jose_jws
from joserfc.jwk import ECKey, OKPKey, RSAKey

from ocen_sdk import jws
from ocen_sdk.jws import VerificationKey, sign_detached, static_resolver
from tests.keymaterial import ec_key, ed25519_key, rsa_key

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

BODY = b'{"loanApplicationId":"a-1","amount":125000.50,"note":"caf\xc3\xa9"}'
# Every verification names its algorithms; these tests allow all four unless they say otherwise.
verify_detached = functools.partial(jws.verify_detached, algorithms=jws.ALGORITHMS)
PAIRS = {"RS256": rsa_key, "PS256": rsa_key, "ES256": ec_key, "EdDSA": ed25519_key}
JOSERFC_KEY = {"RS256": RSAKey, "PS256": RSAKey, "ES256": ECKey, "EdDSA": OKPKey}


@pytest.fixture(scope="module")
def keys():
    return {alg: factory() for alg, factory in PAIRS.items()}


def resolver_for(pair, kid="k1", alg=None):
    return static_resolver([VerificationKey(pair.public_key, kid=kid, alg=alg)])


def b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def forge(header: dict, signature: bytes = b"x" * 64) -> str:
    return f"{b64(json.dumps(header).encode())}..{b64(signature)}"


@pytest.mark.parametrize("alg", list(PAIRS))
def test_round_trip_unencoded_payload(keys, alg):
    signature = sign_detached(BODY, keys[alg].private_key, alg=alg, kid="k1")
    header = json.loads(base64.urlsafe_b64decode(signature.split(".")[0] + "=="))
    assert header == {"alg": alg, "kid": "k1", "b64": False, "crit": ["b64"]}
    assert signature.split(".")[1] == ""
    verified = verify_detached(signature, BODY, resolver_for(keys[alg]))
    assert verified.header["alg"] == alg and verified.key.kid == "k1"


@pytest.mark.parametrize("alg", list(PAIRS))
def test_our_signatures_verify_with_joserfc(keys, alg):
    signature = sign_detached(BODY, keys[alg].private_key, alg=alg, kid="k1")
    key = JOSERFC_KEY[alg].import_key(keys[alg].public_pem())
    result = jose_jws.deserialize_compact(signature, key, algorithms=[alg], payload=BODY)
    assert result.payload == BODY


@pytest.mark.parametrize("alg", list(PAIRS))
def test_joserfc_signatures_verify_with_ours(keys, alg):
    key = JOSERFC_KEY[alg].import_key(keys[alg].private_pem())
    for header in ({"alg": alg, "b64": False, "crit": ["b64"]}, {"alg": alg}):  # RFC 7797, and Appendix F
        attached = jose_jws.serialize_compact(header, BODY, key, algorithms=[alg])
        detached = jose_jws.detach_content(attached)
        verified = verify_detached(detached, BODY, resolver_for(keys[alg]))
        assert verified.payload == BODY


@pytest.mark.parametrize("alg", list(PAIRS))
def test_appendix_f_base64url_payload_round_trip(keys, alg):
    signature = sign_detached(BODY, keys[alg].private_key, alg=alg, b64=True)
    assert verify_detached(signature, BODY, resolver_for(keys[alg], kid=None)).header == {"alg": alg}


@pytest.mark.parametrize("alg", list(PAIRS))
def test_one_byte_changes_fail(keys, alg):
    signature = sign_detached(BODY, keys[alg].private_key, alg=alg, kid="k1")
    resolver = resolver_for(keys[alg])
    tampered_body = BODY[:-2] + bytes([BODY[-2] ^ 1]) + BODY[-1:]
    with pytest.raises(jws.SignatureInvalid):
        verify_detached(signature, tampered_body, resolver)
    header, _, sig = signature.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[len(raw) // 2] ^= 1
    with pytest.raises(jws.SignatureInvalid):
        verify_detached(f"{header}..{b64(bytes(raw))}", BODY, resolver)
    changed_header = json.loads(base64.urlsafe_b64decode(header + "=="))
    changed_header["kid"] = "k1 "
    with pytest.raises(jws.KeyNotFound):
        verify_detached(f"{b64(json.dumps(changed_header).encode())}..{sig}", BODY, resolver)
    changed_header["kid"] = "k1"
    changed_header["x"] = 1
    with pytest.raises(jws.SignatureInvalid):
        verify_detached(f"{b64(json.dumps(changed_header).encode())}..{sig}", BODY, resolver)
    with pytest.raises(jws.SignatureInvalid):
        verify_detached(signature, BODY, resolver_for(PAIRS[alg]()))  # another key of the same type


def test_key_without_kid_tries_each_active_key(keys):
    signature = sign_detached(BODY, keys["ES256"].private_key, alg="ES256")
    resolver = static_resolver([VerificationKey(keys["RS256"].public_key), VerificationKey(ec_key().public_key),
                                VerificationKey(keys["ES256"].public_key)])
    assert verify_detached(signature, BODY, resolver).key.key == keys["ES256"].public_key


@pytest.mark.parametrize(("header", "error"), [
    ({"alg": "none"}, jws.UnsecuredAlgorithm),
    ({"alg": "HS256"}, jws.SymmetricAlgorithm),
    ({"alg": "HS512", "kid": "k1"}, jws.SymmetricAlgorithm),
    ({"alg": "RS512", "kid": "k1"}, jws.AlgorithmNotAllowed),
    ({"alg": "RS256", "kid": "k1", "b64": False, "crit": ["b64", "exp"], "exp": 1}, jws.UnsupportedCritical),
    ({"alg": "RS256", "kid": "k1", "b64": False}, jws.UnencodedPayloadNotCritical),
    ({"alg": "RS256", "kid": "k1", "crit": []}, jws.MalformedSignature),
    ({"alg": "RS256", "kid": "k1", "b64": "no", "crit": ["b64"]}, jws.MalformedSignature),
    ({"alg": "RS256", "kid": "unknown"}, jws.KeyNotFound),
    ({"alg": "ES256", "kid": "k1"}, jws.KeyAlgorithmMismatch),
    ({"kid": "k1"}, jws.MalformedSignature),
])
def test_each_rejection_has_its_typed_error(keys, header, error):
    with pytest.raises(error) as excinfo:
        verify_detached(forge(header), BODY, resolver_for(keys["RS256"]))
    assert excinfo.value.code == error.code
    assert isinstance(excinfo.value, jws.JWSError)


def test_algorithm_outside_the_callers_allow_list(keys):
    signature = sign_detached(BODY, keys["RS256"].private_key, alg="RS256", kid="k1")
    with pytest.raises(jws.AlgorithmNotAllowed):
        verify_detached(signature, BODY, resolver_for(keys["RS256"]), algorithms=["ES256"])


def test_key_bound_to_another_algorithm_is_refused(keys):
    signature = sign_detached(BODY, keys["RS256"].private_key, alg="RS256", kid="k1")
    with pytest.raises(jws.KeyAlgorithmMismatch):
        verify_detached(signature, BODY, resolver_for(keys["RS256"], alg="PS256"))


def test_compatibility_switch_accepts_b64_false_without_crit(keys):
    header = {"alg": "RS256", "kid": "k1", "b64": False}
    encoded = b64(json.dumps(header).encode())
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    raw = keys["RS256"].private_key.sign(encoded.encode() + b"." + BODY, padding.PKCS1v15(), hashes.SHA256())
    signature = f"{encoded}..{b64(raw)}"
    with pytest.raises(jws.UnencodedPayloadNotCritical):
        verify_detached(signature, BODY, resolver_for(keys["RS256"]))
    assert verify_detached(signature, BODY, resolver_for(keys["RS256"]), allow_b64_without_crit=True)


@pytest.mark.parametrize(("signature", "error"), [
    ("", jws.MalformedSignature),
    ("abc", jws.MalformedSignature),
    ("a.b", jws.MalformedSignature),
    ("!!!..abc", jws.MalformedSignature),
    (b64(b"[1,2]") + "..abc", jws.MalformedSignature),
    (b64(b"not json") + "..abc", jws.MalformedSignature),
    (b64(json.dumps({"alg": "RS256", "pad": "x" * 5000}).encode()) + "..abc", jws.HeaderTooLarge),
    (b64(json.dumps({"alg": "RS256"}).encode()) + "." + b64(BODY) + ".abc", jws.NotDetached),
])
def test_malformed_input(keys, signature, error):
    with pytest.raises(error):
        verify_detached(signature, BODY, resolver_for(keys["RS256"]))


def test_signing_refuses_mismatched_key_and_alg(keys):
    with pytest.raises(jws.KeyAlgorithmMismatch):
        sign_detached(BODY, keys["ES256"].private_key, alg="RS256")
    with pytest.raises(jws.AlgorithmNotAllowed):
        sign_detached(BODY, keys["RS256"].private_key, alg="HS256")


@pytest.mark.parametrize("alg", sorted(PAIRS))
def test_a_value_with_its_unused_base64url_bits_set_is_refused(keys, alg):
    """RFC 4648 §3.5: one value, one encoding. Conforming encoders write the unused bits as
    zero (joserfc's signatures verify above), so refusing them costs no interop."""
    signature = sign_detached(BODY, keys[alg].private_key, alg=alg, kid="k1")
    assert verify_detached(signature, BODY, resolver_for(keys[alg]))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(signature.split(".")[2]) % 4 in (2, 3)  # its last character carries unused bits
    flipped = signature[:-1] + alphabet[alphabet.index(signature[-1]) ^ 1]
    with pytest.raises(jws.MalformedSignature, match="not canonical base64url"):
        verify_detached(flipped, BODY, resolver_for(keys[alg]))
    with pytest.raises(jws.MalformedSignature):
        jws.b64url_decode("AB")  # "AB" carries 4 unused bits, the canonical form is "AA"


def test_an_es256_signature_and_its_high_s_twin_normalise_to_one_value(keys):
    signature = sign_detached(BODY, keys["ES256"].private_key, alg="ES256", kid="k1")
    raw = jws.b64url_decode(signature.split(".")[2])
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    twin = f"{signature.rsplit('.', 1)[0]}.{b64(r.to_bytes(32, 'big') + (n - s).to_bytes(32, 'big'))}"
    first = verify_detached(signature, BODY, resolver_for(keys["ES256"]))
    second = verify_detached(twin, BODY, resolver_for(keys["ES256"]))  # both verify: ECDSA is malleable
    assert first.signature == second.signature
    assert int.from_bytes(first.signature[32:], "big") <= n // 2


@pytest.mark.parametrize("alg", list(PAIRS))
def test_the_reference_participants_header_verifies_only_with_the_compatibility_switch(keys, alg):
    """OCEN's reference participant signs with ``b64: false``, no ``crit`` and ``"kid": null``."""
    encoded = b64(json.dumps({"alg": alg, "b64": False, "kid": None}).encode())
    signature = f"{encoded}..{b64(jws._raw_sign(alg, keys[alg].private_key, encoded.encode() + b'.' + BODY))}"
    with pytest.raises(jws.UnencodedPayloadNotCritical):
        verify_detached(signature, BODY, resolver_for(keys[alg]))
    verified = verify_detached(signature, BODY, resolver_for(keys[alg]), allow_b64_without_crit=True)
    assert verified.header == {"alg": alg, "b64": False}  # "kid": null counts as no kid
    with pytest.raises(jws.SignatureInvalid):
        verify_detached(signature, BODY + b" ", resolver_for(keys[alg]), allow_b64_without_crit=True)


def test_an_es256_signature_must_be_64_bytes(keys):
    """RFC 7518 §3.4: R || S, 32 bytes each; the same numbers padded to 33 bytes each are refused."""
    signature = sign_detached(BODY, keys["ES256"].private_key, alg="ES256", kid="k1")
    raw = jws.b64url_decode(signature.split(".")[2])
    padded = b"\0" + raw[:32] + b"\0" + raw[32:]
    with pytest.raises(jws.SignatureInvalid):
        verify_detached(f"{signature.rsplit('.', 1)[0]}.{b64(padded)}", BODY, resolver_for(keys["ES256"]))
