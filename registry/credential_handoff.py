"""The one-time hand-off of a client secret from the admin POST that created it to the
page that shows it.

The POST stores the credentials under a random handle in the operator's own session,
encrypted (Fernet, under a key derived from ``SECRET_KEY``, ``signing.kek.derive``) so the session store never
holds a readable secret, and redirects to ``.../credentials/<handle>/``. That page
shows the secret once: a reload, the back button or a second tab finds it already
shown and rotates nothing, and of simultaneous requests exactly one shows it (each
use is claimed by one unique row in the database, ``authservice.replay.claim_once``).
Until the hand-off expires (``TTL_SECONDS``) the secret
can still go, once, into the configuration file the page offers for download; then
it is gone. The secret is never logged and never part of a URL.
"""

import json
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from authservice.replay import claim_once
from registry import services
from signing.kek import KeyPurpose, fernet_key

SESSION_KEY = "registry_credential_handoffs"
TTL_SECONDS = 300
# A use is remembered a little longer than the hand-off can be opened at all.
CLAIM_MARGIN_SECONDS = 60


@dataclass(frozen=True)
class Handoff:
    participant_pk: int
    client_id: str
    client_secret: str = field(repr=False)
    title: str


def _fernet() -> Fernet:
    return Fernet(fernet_key(KeyPurpose.CREDENTIAL_HANDOFF, settings.SECRET_KEY))


def _open(token: str) -> Handoff | None:
    try:
        payload = json.loads(_fernet().decrypt(token.encode("ascii"), ttl=TTL_SECONDS))
    except (InvalidToken, ValueError):
        return None
    return Handoff(participant_pk=payload["participant"], client_id=payload["client_id"],
                   client_secret=payload["client_secret"], title=payload["title"])


def _entries(request: HttpRequest) -> dict[str, dict]:
    """The session's live hand-offs; expired ones are dropped."""
    fernet = _fernet()
    live = {}
    for handle, entry in request.session.get(SESSION_KEY, {}).items():
        try:
            fernet.decrypt(entry["token"].encode("ascii"), ttl=TTL_SECONDS)
        except (InvalidToken, KeyError, AttributeError):
            continue
        live[handle] = entry
    return live


def _save(request: HttpRequest, entries: dict[str, dict]) -> None:
    if entries:
        request.session[SESSION_KEY] = entries
    else:
        request.session.pop(SESSION_KEY, None)


def store(request: HttpRequest, credentials: services.Credentials, title: str) -> str:
    """Keep the credentials for their one display; returns the handle."""
    handle = secrets.token_urlsafe(24)
    payload = json.dumps({"participant": credentials.participant.pk, "client_id": credentials.client_id,
                          "client_secret": credentials.client_secret, "title": title})
    entries = _entries(request)
    entries[handle] = {"token": _fernet().encrypt(payload.encode("utf-8")).decode("ascii"), "shown": False}
    _save(request, entries)
    return handle


def _claimed(use: str, handle: str) -> bool:
    """True for the one request that uses the hand-off this way. Simultaneous requests of
    one session each read the session before any of them writes it back, so the session's
    own flags cannot decide: one row in the database does (a unique insert)."""
    expires_at = timezone.now() + timedelta(seconds=TTL_SECONDS + CLAIM_MARGIN_SECONDS)
    return claim_once(f"credential_handoff_{use}", handle, expires_at=expires_at)


def take_for_display(request: HttpRequest, handle: str, participant_pk: int) -> Handoff | None:
    """The credentials, the first time their page is asked for; None ever after."""
    entries = _entries(request)
    entry = entries.get(handle)
    handoff = _open(entry["token"]) if entry else None
    if (handoff is None or entry["shown"] or handoff.participant_pk != participant_pk
            or not _claimed("display", handle)):
        _save(request, entries)
        return None
    entry["shown"] = True
    _save(request, entries)
    return handoff


def take_for_download(request: HttpRequest, handle: str, participant_pk: int) -> Handoff | None:
    """The credentials for the configuration file, once, after their display; the hand-off
    ends here."""
    entries = _entries(request)
    entry = entries.pop(handle, None)
    _save(request, entries)
    handoff = _open(entry["token"]) if entry else None
    if handoff is None or handoff.participant_pk != participant_pk or not _claimed("download", handle):
        return None
    return handoff


def discard_shown(request: HttpRequest, participant_pk: int) -> None:
    """Back on the participant's page: the secrets already shown for it, and every
    expired hand-off, leave the session now rather than when it ends."""
    if SESSION_KEY not in request.session:
        return
    entries = {}
    for handle, entry in _entries(request).items():
        handoff = _open(entry["token"])
        if handoff is not None and not (entry["shown"] and handoff.participant_pk == participant_pk):
            entries[handle] = entry
    _save(request, entries)
