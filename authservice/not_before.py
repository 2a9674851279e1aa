"""A client's tokens-not-before: the instant before which every token it was issued
is refused (suspension, reinstatement, "revoke all tokens", a secret rotation that
asks for it).

It is a whole second, rounded up from the moment it was set, and compared with a
token's integer ``iat``: a token is refused when ``iat < tokens_not_before``. The
issuer never stamps a token of the client with an ``iat`` below it, so a token
issued after the cut-off, even within the same second, is accepted, and one issued
before it is not. Both sides read the same clock, ``time.time()``.
"""

import math
import time
from datetime import UTC, datetime


def cutoff_now(previous: datetime | None = None) -> datetime:
    """The tokens-not-before to store now: the next whole second (this one if exact),
    and never earlier than ``previous``, so a clock stepping back cannot reopen it."""
    cutoff = datetime.fromtimestamp(math.ceil(time.time()), tz=UTC)
    return max(cutoff, previous) if previous is not None else cutoff


def epoch(client) -> int | None:
    """The client's tokens-not-before in epoch seconds, or None if it has none."""
    value = client.tokens_not_before
    return None if value is None else math.ceil(value.timestamp())


def issued_before(iat, client) -> bool:
    """Was a token with this ``iat`` issued before the client's tokens-not-before?

    A token without a usable ``iat`` counts as issued before any cut-off.
    """
    not_before = epoch(client)
    if not_before is None:
        return False
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        return True
    return iat < not_before


def as_text(value: datetime | None) -> str | None:
    """The wire form: RFC 3339 in UTC with whole seconds and a ``Z`` (or None)."""
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
