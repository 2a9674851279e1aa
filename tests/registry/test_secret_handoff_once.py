"""The one-time secret page shows a new secret exactly once, even to simultaneous
requests of the same session: its consumption is one atomic claim, not a flag in a
session that every request reads before any of them writes it back."""

import threading

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection, connections
from django.http import HttpRequest
from django.test import Client
from django.urls import reverse

from registry import credential_handoff


@pytest.fixture
def rotated(onboard, admin_user, settings):
    """A rotation posted by a logged-in operator: (the operator's cookie, the page's URL, participant)."""
    settings.AUTHSERVICE = {**settings.AUTHSERVICE, "FOUR_EYES": False}
    creds, _ = onboard("LENDER", "Handoff Bank")
    browser = Client()
    browser.force_login(admin_user)
    url = reverse("admin:registry_participant_workflow", args=[creds.participant.pk, "rotate-secret"])
    posted = browser.post(url, {"grace_seconds": "0"})
    assert posted.status_code == 303
    return browser.cookies["sessionid"].value, posted["Location"], creds.participant


def _request_with_session(session_key: str) -> HttpRequest:
    request = HttpRequest()
    request.session = SessionStore(session_key=session_key)
    return request


def test_two_requests_that_loaded_the_session_before_either_saved_show_the_secret_once(rotated):
    """The interleaving of the race, step by step: both load, both take, both save."""
    session_key, page_url, participant = rotated
    handle = page_url.rstrip("/").rsplit("/", 1)[1]
    first, second = _request_with_session(session_key), _request_with_session(session_key)
    first.session.load(), second.session.load()
    shown = [credential_handoff.take_for_display(request, handle, participant.pk) for request in (first, second)]
    for request in (first, second):
        request.session.save()
    assert sum(handoff is not None for handoff in shown) == 1


def test_the_download_after_a_racing_display_still_hands_the_secret_out_once(rotated):
    session_key, page_url, participant = rotated
    handle = page_url.rstrip("/").rsplit("/", 1)[1]
    first, second = _request_with_session(session_key), _request_with_session(session_key)
    first.session.load(), second.session.load()
    assert credential_handoff.take_for_display(first, handle, participant.pk) is not None
    taken = [credential_handoff.take_for_download(request, handle, participant.pk) for request in (first, second)]
    assert sum(handoff is not None for handoff in taken) == 1


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="simultaneous requests need concurrent database connections; SQLite serialises them")
def test_four_simultaneous_gets_of_the_secret_page_show_it_once(rotated):
    session_key, page_url, _ = rotated
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def get():
        browser = Client()
        browser.cookies["sessionid"] = session_key
        try:
            barrier.wait()
            statuses.append(browser.get(page_url).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=get) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [200, 410, 410, 410]


def test_a_secret_is_shown_once_then_never(rotated):
    session_key, page_url, _ = rotated
    browser = Client()
    browser.cookies["sessionid"] = session_key
    assert [browser.get(page_url).status_code for _ in range(3)] == [200, 410, 410]
