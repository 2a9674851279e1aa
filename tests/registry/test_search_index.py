"""On PostgreSQL the API's search runs on the trigram index (migration 0004), whatever the
registry's size: the exact queries the list view runs, the count and the page, must be
ones the index serves."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from registry import selectors

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="pg_trgm is PostgreSQL's"),
]
INDEX = "registry_organisation_legal_name_upper_trgm"


def _plan(sql: str) -> str:
    with connection.cursor() as cursor:
        # A test database holds a handful of rows, where a scan is cheapest: forbid scans
        # of the table and plain index scans (a whole btree read in order, filtered) to
        # see whether the trigram index, bitmap scans only, can serve the query at all.
        for setting in ("enable_seqscan", "enable_indexscan", "enable_indexonlyscan"):
            cursor.execute(f"SET LOCAL {setting} = off")
        cursor.execute(f"EXPLAIN {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.django_db
def test_search_count_and_page_use_the_trigram_index(onboard):
    onboard(name="Scale Org 0012345")
    queryset = selectors.participant_list(search="12345")
    with CaptureQueriesContext(connection) as count:
        assert queryset.count() == 1
    with CaptureQueriesContext(connection) as page:
        assert len(queryset[:50]) == 1
    assert INDEX in _plan(count.captured_queries[0]["sql"])
    assert INDEX in _plan(page.captured_queries[0]["sql"])
