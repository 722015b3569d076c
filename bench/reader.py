"""Reader: cold-start import time against `import boto3`, and handler time per read against a
bare `get_item` on the same moto table.

Reads measured: one row (one GetItem), a list page by number (manifest + chunk: two GetItems),
the same page through its cursor (the chunk only: one GetItem), and a revalidation answered
304 (the manifest only). The baseline is a bare consistent `get_item` of the row's item, so the
ratios show what the handler adds on top of DynamoDB itself (here moto, which is slower than
DynamoDB's single-digit milliseconds but costs the same for every read).
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import warnings
from collections.abc import Callable
from typing import Any

from bench.common import ROOT, BenchContext, import_seconds, percentile, quiet, table, use_fake_aws

REQUESTS = 300
LIST_ROWS = 1_000  # about 170 KB: pages 1 and 2 are full 64 KB chunks
CHUNK_BYTES = 64_000  # the consumer's default LIST_CHUNK_BYTES


def measure_imports() -> list[tuple[str, ...]]:
    boto3_s = import_seconds("boto3")
    reader_s = import_seconds("reader.handler")
    return [
        ("import", "median s", "x import boto3"),
        ("boto3", f"{boto3_s:.3f}", "1.00"),
        ("reader.handler", f"{reader_s:.3f}", f"{reader_s / boto3_s:.2f}"),
    ]


def measure_requests() -> list[tuple[str, ...]]:
    use_fake_aws()
    import boto3
    from moto import mock_aws

    from local.aws_resources import provision
    from local.template import function_environment
    from reader.handler import build_ports, lambda_handler
    from waituntil.adapters.cache_store import CacheStore
    from waituntil.cache.layout import fresh_rows
    from waituntil.cache.list_patch import ListSizes
    from waituntil.core.list_order import ListOrder
    from waituntil.core.settings import ReaderSettings
    from waituntil.sync.list_publish import publish_list

    webhook = json.loads((ROOT / "events/receiver/insert.json").read_text())
    row_42 = json.loads(webhook["body"])["record"]
    rows = [{**row_42, "id": key, "title": f"Article {key}"} for key in range(1, LIST_ROWS + 1)]
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        stack = provision(boto3.client("sqs"), dynamodb, parameters={"SupabaseUrl": "http://x"})
        store = CacheStore(stack.table_name, dynamodb)
        order = ListOrder("id")
        keys = [str(row["id"]) for row in rows]
        store.write_rows("articles", fresh_rows(keys, rows, order), read_at_ns=1, order=order)
        publish_list(
            store,
            "articles",
            keys,
            order=order,
            sizes=ListSizes(chunk_bytes=CHUNK_BYTES),
            complete=True,
        )
        head = store.get_head("articles")
        assert head is not None
        settings = ReaderSettings.model_validate(
            function_environment(stack.resolver, "ReaderFunction")
        )
        ports = build_ports(settings, dynamodb=dynamodb)
        context = BenchContext()

        def invoke(event_file: str, **changes: Any) -> Callable[[], dict[str, Any]]:
            event = json.loads((ROOT / "events" / event_file).read_text())
            event.update(changes)
            return lambda: lambda_handler(event, context, ports=ports)

        page_2 = invoke("reader/list_page_2.json")()
        cursor = page_2["multiValueHeaders"]["Link"][0].split("cursor=")[1].split(">")[0]
        etag = page_2["multiValueHeaders"]["ETag"][0]
        reads = {
            "item (1 GetItem)": invoke("reader/item.json"),
            "page ?page=2 (2 GetItems)": invoke("reader/list_page_2.json"),
            "page ?cursor= (1 GetItem)": invoke(
                "reader/list.json", queryStringParameters={"cursor": cursor}
            ),
            "page 304 (1 GetItem)": invoke(
                "reader/list_page_2.json",
                headers={"If-None-Match": etag},
                multiValueHeaders={"If-None-Match": [etag]},
            ),
        }
        expected = {"page 304 (1 GetItem)": 304}
        bare: list[float] = []
        samples: dict[str, list[float]] = {name: [] for name in reads}
        bare_read: dict[str, Any] = {
            "TableName": stack.table_name,
            "Key": {"pk": {"S": "/articles/42"}},
            "ConsistentRead": True,  # as CacheStore reads
        }
        # Powertools prints a metrics blob every 100 values (the 304s): keep the table readable.
        quiet = contextlib.redirect_stdout(io.StringIO())
        with quiet:
            _run(reads, expected, samples, bare, lambda: dynamodb.get_item(**bare_read))
    page_bytes = len(page_2["body"].encode())
    base = percentile(bare, 0.5)
    result: list[tuple[str, ...]] = [("per read (moto)", "p50 ms", "p95 ms", "x bare get_item p50")]
    for name, values in {"bare get_item": bare, **samples}.items():
        p50 = percentile(values, 0.5)
        p95 = percentile(values, 0.95)
        result.append((name, f"{p50 * 1000:.2f}", f"{p95 * 1000:.2f}", f"{p50 / base:.2f}"))
    note = f"(page body {page_bytes:,} bytes; {LIST_ROWS:,} rows in {head.chunk_count} pages)"
    result.append((note, "", "", ""))
    return result


def _run(
    reads: dict[str, Callable[[], dict[str, Any]]],
    expected: dict[str, int],
    samples: dict[str, list[float]],
    bare: list[float],
    bare_read: Callable[[], object],
) -> None:
    for _ in range(REQUESTS):  # interleaved, so drift affects all alike
        started = time.perf_counter()
        bare_read()
        bare.append(time.perf_counter() - started)
        for name, read in reads.items():
            started = time.perf_counter()
            response = read()
            samples[name].append(time.perf_counter() - started)
            assert response["statusCode"] == expected.get(name, 200), (name, response)


def main() -> None:
    print("## Reader\n")
    print(table(measure_imports()))
    print()
    with warnings.catch_warnings():
        # Powertools warns on every invocation that adds no metric (all but the 304s).
        warnings.simplefilter("ignore")
        with quiet():
            rows = measure_requests()
        print(table(rows))
    print()


if __name__ == "__main__":
    main()
