"""The old home of the service's signing keys, kept so existing imports work: they are
the signing app's now (``signing.keys``, ``signing.kek``, ``signing.jwks``). Names are
re-exported, not copied, so patch them where they live (``signing.keys._new_key``)."""

from signing.jwks import published_jwks  # noqa: F401
from signing.kek import *  # noqa: F403
from signing.kek import _fernet_key, _multi_fernet  # noqa: F401
from signing.kek import decrypts as _decrypts  # noqa: F401
from signing.kek import encryption_materials as _encryption_materials  # noqa: F401
from signing.kek import key_encryption_for_writing as _key_encryption_for_writing  # noqa: F401
from signing.keys import *  # noqa: F403
from signing.keys import (  # noqa: F401
    _Cached,
    _described,
    _generate_private_key,
    _KeyCache,
    _load_private,
    _load_public,
    _new_key,
    _record,
    _recovery_hint,
)
from signing.models import SigningKey, SigningKeyState  # noqa: F401
