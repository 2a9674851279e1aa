"""Is a presented access token still good? And revoking one.

Tokens are self-contained; what can end one early is recorded here: its client
being deactivated or deleted (suspension, offboarding), the token being issued
before its client's tokens-not-before (suspension, reinstatement, "revoke all
tokens", a secret rotation that asks for it), or the token itself being revoked
(RFC 7009).
"""

import uuid
from datetime import UTC, datetime

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from authservice import not_before
from authservice.clientcache import ClientRecord, client_cache, generation_pinned, generation_sql, lookup_value
from authservice.models import RevokedToken
from authservice.tokens import AccessToken


def _jti(token: AccessToken) -> uuid.UUID | None:
    try:
        return uuid.UUID(hex=token.jti)
    except (ValueError, TypeError):
        return None  # not a jti this service issued


def live_client_record(token: AccessToken) -> ClientRecord | None:
    """The token's client record, if the client is still active, the token was issued
    no earlier than the client's tokens-not-before, and it was not revoked.

    One query: the client's generation (``authservice.clientcache``) and whether the
    token is on the revocation list, read together."""
    jti = _jti(token)
    if jti is None:
        return None
    quote = connection.ops.quote_name
    revoked_sql = (f"SELECT 1 FROM {quote(RevokedToken._meta.db_table)} "  # noqa: S608
                   f"WHERE {quote('jti')} = %s")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT ({generation_sql()}), EXISTS({revoked_sql})",
                       [lookup_value(token.client_id), RevokedToken._meta.pk.get_db_prep_value(jti, connection)])
        generation, revoked = cursor.fetchone()
    with generation_pinned(token.client_id, generation):
        record = client_cache.get(token.client_id)
    if record is None or not_before.issued_before(token.issued_at, record.client) or revoked:
        return None
    return record


def token_is_live(token: AccessToken) -> bool:
    return live_client_record(token) is not None


def revoke_access_token(token: AccessToken) -> None:
    jti = _jti(token)
    if jti is None:
        return
    expires_at = datetime.fromtimestamp(float(token.claims.get("exp", 0)), tz=UTC)
    try:
        with transaction.atomic():
            RevokedToken.objects.create(jti=jti, client_id=token.client_id, expires_at=expires_at)
    except IntegrityError:
        pass  # revoked already


def purge_expired_revocations() -> int:
    deleted, _ = RevokedToken.objects.filter(expires_at__lt=timezone.now()).delete()
    return deleted
