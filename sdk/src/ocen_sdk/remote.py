"""Former home of ``TokenManager``, ``ServiceKeys``, ``AccessTokenVerifier`` and
``RegistryClient``, now split by what each owns: ``ocen_sdk.tokens``,
``ocen_sdk.service_keys``, ``ocen_sdk.registry`` (errors in ``ocen_sdk.errors``).
Old imports keep working: every name this module had is still here.
"""

from ocen_sdk._flow import TOKEN, Call, Flow, arun, run  # noqa: F401
from ocen_sdk.errors import *  # noqa: F403
from ocen_sdk.jws import (  # noqa: F401
    JWSError,
    KeyNotFound,
    OCENError,
    PrivateKey,
    Signer,
    VerificationKey,
    peek_header,
    sign_jwt,
    validate_claims,
    verify_detached,
    verify_jwt,
)
from ocen_sdk.key_loading import default_alg, verification_key_from_jwk  # noqa: F401
from ocen_sdk.registry import *  # noqa: F403
from ocen_sdk.registry import _Cached, _epoch, _participant_record  # noqa: F401
from ocen_sdk.service_keys import *  # noqa: F403
from ocen_sdk.service_keys import _header_or_empty, _max_age  # noqa: F401
from ocen_sdk.tokens import *  # noqa: F403
from ocen_sdk.wire import REGISTRY_BINDING, SIGNATURE_HEADER, fresh  # noqa: F401
