"""Is a presented access token still good? And revoking one.

Tokens are self-contained; what can end one early is recorded here: its client
being deactivated (suspension, offboarding: every token of the client at once) or
the token itself being revoked (RFC 7009).
"""

import hashlib
from datetime import UTC, datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from authservice.clientcache import client_cache
from authservice.models import RevokedToken
from authservice.tokens import AccessToken


def jti_hash(jti: str) -> str:
    return hashlib.sha256(jti.encode("utf-8")).hexdigest()


def token_is_live(token: AccessToken) -> bool:
    """The token's client is still active and the token was not revoked."""
    if not token.jti or client_cache.get(token.client_id) is None:
        return False
    return not RevokedToken.objects.filter(jti_hash=jti_hash(token.jti)).exists()


def revoke_access_token(token: AccessToken) -> None:
    expires_at = datetime.fromtimestamp(float(token.claims.get("exp", 0)), tz=UTC)
    try:
        with transaction.atomic():
            RevokedToken.objects.create(jti_hash=jti_hash(token.jti), client_id=token.client_id,
                                        expires_at=expires_at)
    except IntegrityError:
        pass  # revoked already


def purge_expired_revocations() -> int:
    deleted, _ = RevokedToken.objects.filter(expires_at__lt=timezone.now()).delete()
    return deleted
