"""What gets signed in an HTTP exchange, shared by the SDK and the provider middleware."""

SIGNATURE_HEADER = "x-jws-signature"
# OCEN's prose calls it "Signature"; accepted on input, never preferred on output.
ALTERNATE_SIGNATURE_HEADER = "Signature"


def signed_payload(body: bytes, target: str) -> bytes:
    """The bytes a request's signature covers: the raw body, or for a bodyless
    request the request target (path and query, exactly as sent)."""
    return body if body else target.encode("utf-8")
