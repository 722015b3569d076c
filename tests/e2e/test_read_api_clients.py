"""The read API as off-the-shelf HTTP clients use it: absolute Link targets, HEAD sizes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from local.stack import PipelineStack
from tests.e2e.conftest import TABLE

pytestmark = pytest.mark.e2e


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # loopback only: no proxy from the environment
        yield session


def test_requests_follows_next_links_through_every_page(
    paged_stack: PipelineStack, session: requests.Session
) -> None:
    # Given a list of several pages, and requests, which does not resolve relative Link targets
    stack = paged_stack

    # When a client follows r.links["next"]["url"] verbatim from the first page
    response = session.get(f"{stack.api_url}/{TABLE}", timeout=10)
    first_links = response.links
    rows: list[Any] = []
    pages = 0
    while True:
        assert response.status_code == 200
        rows += response.json()
        pages += 1
        if "next" not in response.links:
            break
        response = session.get(response.links["next"]["url"], timeout=10)

    # Then every target is absolute, stage included (served locally as deployed), and the
    # pages together are the table, once each
    assert first_links["next"]["url"].startswith(f"{stack.api_url}/v1/{TABLE}?cursor=")
    assert first_links["last"]["url"].startswith(f"{stack.api_url}/v1/{TABLE}?cursor=")
    assert pages > 2
    assert stack.supabase is not None
    assert rows == stack.supabase.rows(TABLE)


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
@pytest.mark.parametrize("path", [f"/{TABLE}", f"/{TABLE}/3", f"/v1/{TABLE}?page=2"])
def test_head_announces_the_content_length_get_sends(
    paged_stack: PipelineStack, session: requests.Session, path: str, encoding: str
) -> None:
    # Given a page or a row, with or without gzip (1 KiB bodies pass the compression threshold)
    url = f"{paged_stack.api_url}{path}"
    headers = {"Accept-Encoding": encoding}

    # When it is asked for with HEAD, then with GET
    head = session.head(url, headers=headers, timeout=10)
    get = session.get(url, headers=headers, timeout=10, stream=True)
    sent = get.raw.read(decode_content=False)

    # Then HEAD has no body but announces exactly the length GET sends, and the same validators
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert int(head.headers["Content-Length"]) == len(sent) > 0
    assert head.headers.get("Content-Encoding") == get.headers.get("Content-Encoding")
    assert head.headers["ETag"] == get.headers["ETag"]


def test_the_stage_prefix_reaches_the_same_routes(
    paged_stack: PipelineStack, session: requests.Session
) -> None:
    # Given a running stack
    stack = paged_stack

    # When the same unknown-table read is made with and without the stage
    root = session.get(f"{stack.api_url}/nothing", timeout=10)
    staged = session.get(f"{stack.api_url}/v1/nothing", timeout=10)

    # Then both reach the reader (its JSON 404), not the gateway's 403
    assert root.status_code == staged.status_code == 404
    assert root.json() == staged.json()
    assert root.json()["error"] == "Not Found"


def test_plain_reads_log_no_empty_metrics_warning(
    paged_stack: PipelineStack, session: requests.Session
) -> None:
    # Given reads that add no metric (200s: only 304s and errors count)
    for path in (f"/{TABLE}", f"/{TABLE}/1"):
        assert session.get(f"{paged_stack.api_url}{path}", timeout=10).status_code == 200
    # When the reader's log is read / Then Powertools' "nothing to publish" warning is not in it
    assert paged_stack.function_logs is not None
    log = (paged_stack.function_logs / "ReaderFunction.log").read_text()
    assert "No application metrics to publish" not in log
