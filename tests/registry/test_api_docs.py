"""The API docs pages load nothing from other hosts: ReDoc's bundle is served from
here with its vendor's logo address replaced by a local image (registry/api/docs.py).
The browser test (tests/browser) shows the whole page making no outside request."""

import re

import pytest


@pytest.mark.django_db
def test_the_redoc_page_loads_its_bundle_from_this_host(client):
    page = client.get("/registry/v1/redoc")
    assert page.status_code == 200
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', page.content.decode())
    assert "/registry/v1/redoc.standalone.js" in scripts
    assert all(src.startswith("/") for src in scripts), scripts


def test_the_bundle_names_no_other_host_for_what_it_loads(client):
    response = client.get("/registry/v1/redoc.standalone.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"cdn.redoc.ly" not in body
    assert b"/static/registry/api/docs-logo.svg" in body
    assert len(body) > 500_000  # the whole renderer, not a stub


def test_the_bundle_is_revalidated_by_etag(client):
    first = client.get("/registry/v1/redoc.standalone.js")
    again = client.get("/registry/v1/redoc.standalone.js", HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304 and again["ETag"] == first["ETag"]
    assert client.post("/registry/v1/redoc.standalone.js").status_code == 405
