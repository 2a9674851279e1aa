"""Property-based tests of every parser an attacker can reach without credentials:
whatever the input, only the typed errors come out (never a RecursionError,
ValueError, TypeError, KeyError...). Bounded so the suite stays fast."""

import base64
import contextlib
import json

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocen_sdk import jws
from ocen_sdk.jws import JWSError, VerificationKey, static_resolver
from ocen_sdk.key_loading import verification_key_from_jwk
from registry.key_material import parse_public_key
from tests.keymaterial import ec_key

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = ec_key()
RESOLVER = static_resolver([VerificationKey(KEY.public_key, kid="k1")])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
headers = st.dictionaries(st.sampled_from(["alg", "kid", "b64", "crit", "typ", "htm", "x"]), json_values, max_size=6)


def _encoded(value) -> str:
    return b64(json.dumps(value, allow_nan=True).encode())


def _nested(depth: int) -> str:
    return b64(("[" * depth).encode())


@FAST
@given(st.text(max_size=300))
def test_any_text_as_a_detached_signature_is_a_typed_error(text):
    with pytest.raises(JWSError):
        jws.verify_detached(text, b"body", RESOLVER, algorithms=jws.ALGORITHMS)


@FAST
@given(headers, st.binary(max_size=80))
def test_any_header_in_a_detached_signature_is_a_typed_error(header, signature):
    with pytest.raises(JWSError):
        jws.verify_detached(f"{_encoded(header)}..{b64(signature)}", b"body", RESOLVER, algorithms=jws.ALGORITHMS,
                            allow_b64_without_crit=True)


@FAST
@given(headers, json_values, st.binary(max_size=80))
def test_any_header_and_claims_in_a_jwt_are_a_typed_error(header, claims, signature):
    token = f"{_encoded(header)}.{_encoded(claims)}.{b64(signature)}"
    with pytest.raises(JWSError):
        jws.verify_jwt(token, RESOLVER, algorithms=jws.ALGORITHMS, typ=None)
    with contextlib.suppress(JWSError):
        jws.peek_claims(token)


@FAST
@given(st.dictionaries(st.sampled_from(["iss", "aud", "exp", "nbf", "iat"]), json_values))
def test_any_claim_values_are_checked_with_typed_errors(claims):
    with contextlib.suppress(JWSError):
        jws.validate_claims(claims, issuer="i", audience="a", leeway=30)


@pytest.mark.parametrize("depth", [17, 1500, 100_000])
def test_deeply_nested_json_is_refused_before_parsing(depth):
    with pytest.raises(jws.MalformedSignature):
        jws.verify_detached(f"{_nested(depth)}..AAAA", b"x", RESOLVER, algorithms=jws.ALGORITHMS)
    with pytest.raises(JWSError):
        jws.verify_jwt(f"{_encoded({'alg': 'ES256'})}.{_nested(depth)}.AAAA", RESOLVER, algorithms=jws.ALGORITHMS,
                       typ=None)
    with pytest.raises(jws.MalformedSignature):
        jws.peek_claims(f"e30.{_nested(depth)}.AAAA")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(value):
    with pytest.raises(jws.MalformedSignature):
        jws.parse_json_object(f'{{"exp": {value}}}'.encode(), "claims")


@FAST
@given(st.binary(max_size=200))
def test_any_bytes_as_json_is_a_typed_error_or_an_object(raw):
    with contextlib.suppress(jws.MalformedSignature):
        assert isinstance(jws.parse_json_object(raw, "x"), dict)


@FAST
@given(st.dictionaries(st.sampled_from(["kty", "crv", "x", "y", "n", "e", "kid", "alg", "x5c", "d"]), json_values,
                       max_size=7))
def test_any_jwk_is_a_typed_error_or_a_key(data):
    with contextlib.suppress(JWSError):
        verification_key_from_jwk(data)


@FAST
@given(st.one_of(st.text(max_size=400), headers.map(json.dumps),
                 st.builds(lambda body: f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----",
                           st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n",
                                   max_size=300))))
def test_any_key_material_is_a_validation_error_or_a_key(material):
    with contextlib.suppress(ValidationError):
        parse_public_key(material)
