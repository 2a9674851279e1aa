"""The service's signature on a registry answer: a detached JWS over the exact bytes
served (a body, or a 304's ETag), bound to the path it answers and the time
(``ocen_sdk.wire``, registry binding), made with the active signing key."""

import time

from ocen_sdk.jws import sign_detached
from ocen_sdk.wire import REGISTRY_BINDING
from signing.keys import active_signer


def sign_response(payload: bytes, path: str) -> str | None:
    """The service's signature over ``payload`` bound to ``path`` and the time, or None
    while the service has no signing key. ``SigningKeyUnavailable`` if it cannot sign."""
    signer = active_signer()
    if signer is None:
        return None
    return sign_detached(payload, signer.key, alg=signer.alg, kid=signer.kid,
                         extra_header={"htu": path, "iat": int(time.time())}, critical=REGISTRY_BINDING)
