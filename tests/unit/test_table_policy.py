"""The per-table policy: defaults, what TABLE_POLICIES may say, and what it may not."""

from __future__ import annotations

import pytest

from local.template import Resolver, function_environment, load_template
from waituntil.core.errors import ServiceViewServedPublicly
from waituntil.core.settings import ConsumerSettings, ReaderSettings, ReceiverSettings
from waituntil.core.table_policy import TablePolicy, parse_policies

DEFAULT = TablePolicy()


def test_the_common_case_needs_no_policy_and_caches_the_public_view() -> None:
    # Given CachedTables alone / When parsed / Then every table: id, by id, all columns, anon
    policies = parse_policies(("articles",), "", DEFAULT)
    assert policies["articles"] == TablePolicy(key="id", columns="*", role="anon")
    assert policies["articles"].list_order.by_key


def test_a_policy_overrides_only_what_it_names() -> None:
    policies = parse_policies(
        ("articles", "authors"),
        '{"authors": {"key": "slug", "order": "name.desc", "columns": "name,bio"}}',
        TablePolicy(key="id", order="created_at"),
    )
    authors = policies["authors"]
    assert (authors.key, authors.order, authors.role) == ("slug", "name.desc", "anon")
    # The key and the order column are always read, so rows can be keyed and placed
    assert authors.select == "name,bio,slug"
    assert policies["articles"].order == "created_at"


def test_filters_are_kept_as_written_for_postgrest() -> None:
    policy = TablePolicy(filter="published=eq.true&or=(a.eq.1,b.is.null)")
    assert policy.filters() == [("published", "eq.true"), ("or", "(a.eq.1,b.is.null)")]


@pytest.mark.parametrize(
    ("policies", "message"),
    [
        ("not json", "not JSON"),
        ('{"drafts": {}}', "not cached"),
        ('{"articles": {"role": "admin"}}', "policy of articles"),
        ('{"articles": {"key": "id; drop"}}', "policy of articles"),
        ('{"articles": {"order": "title.sideways"}}', "policy of articles"),
        ('{"articles": {"filter": "published"}}', "policy of articles"),
        ('{"articles": {"colour": "red"}}', "policy of articles"),
        ('["articles"]', "must map tables"),
    ],
)
def test_a_policy_that_cannot_be_meant_stops_the_function(policies: str, message: str) -> None:
    # Given a malformed TABLE_POLICIES / When the settings load / Then a clear error
    with pytest.raises(ValueError, match=message):
        ReceiverSettings.model_validate(
            {
                "QUEUE_URL": "q",
                "WEBHOOK_SECRET_NAME": "s",
                "MAX_MESSAGE_BYTES": "65536",
                "CACHED_TABLES": "articles",
                "TABLE_POLICIES": policies,
            }
        )


def test_every_function_reads_the_same_keys() -> None:
    settings = ReceiverSettings.model_validate(
        {
            "QUEUE_URL": "q",
            "WEBHOOK_SECRET_NAME": "s",
            "MAX_MESSAGE_BYTES": "65536",
            "CACHED_TABLES": "articles,authors",
            "TABLE_POLICIES": '{"authors": {"key": "slug"}}',
        }
    )
    assert settings.primary_keys == {"articles": "id", "authors": "slug"}


@pytest.mark.parametrize(
    "change",
    [
        {"key": "slug"},
        {"order": "rank"},
        {"order": "rank.desc"},
        {"columns": "id,title"},
        {"filter": "published=eq.true"},
        {"role": "service"},
    ],
)
def test_the_digest_changes_with_every_part_that_shapes_the_cache(change: dict[str, str]) -> None:
    # Given the default policy / When any one part changes / Then its digest changes,
    # and the same policy declared again keeps it (what the reader compares with the cache)
    assert TablePolicy(**change).digest != DEFAULT.digest  # type: ignore[arg-type]
    assert TablePolicy(**change).digest == TablePolicy(**change).digest  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [{"public": True}, {"changed_at": "edited_at"}, {"changed_at": False}, {"fingerprint": True}],
)
def test_what_only_the_reconciler_or_the_reader_reads_rebuilds_nothing(
    change: dict[str, object],
) -> None:
    # Given the default policy / When only who may read it, or how lost changes are looked
    # for, changes / Then its digest stays: the cache built with it is still served as it is
    assert TablePolicy(**change).digest == DEFAULT.digest  # type: ignore[arg-type]


def test_the_reader_and_the_consumer_derive_the_same_digest() -> None:
    # Given the template's environment for both functions, with a list order and policies set
    # (the reader compares what it serves with the digest the consumer stored)
    resolver = Resolver(
        load_template(),
        parameters={
            "ListOrder": "published_at.desc",
            "TablePolicies": '{"authors": {"key": "slug", "columns": "slug,name"}}',
            "CachedTables": "articles,authors",
        },
        refs={"CacheTable": "cache", "ChangeQueue": "queue", "BlobBucket": "bucket"},
    )
    consumer = {
        **function_environment(resolver, "ConsumerFunction"),
        "SUPABASE_URL": "https://project.supabase.co",
    }
    reader = function_environment(resolver, "ReaderFunction")
    # When both load their settings / Then every table's policy, and digest, is the same
    consumer_settings = ConsumerSettings.model_validate(consumer)
    reader_settings = ReaderSettings.model_validate(reader)
    for table in ("articles", "authors"):
        assert consumer_settings.policy(table) == reader_settings.policy(table)
    assert consumer_settings.policy("articles").order == "published_at.desc"


READER = {"CACHE_TABLE_NAME": "cache", "CACHED_TABLES": "articles,authors"}


@pytest.mark.parametrize(
    "policies",
    [
        '{"articles": {"role": "service"}}',
        '{"articles": {"role": "service", "public": false}}',
        '{"articles": {"role": "service"}, "authors": {"role": "service", "public": true}}',
    ],
)
def test_a_public_reader_refuses_a_service_view_its_policy_does_not_call_public(
    policies: str,
) -> None:
    # Given a table cached with the service role's view (every row, RLS bypassed) and a public
    # read API, without "public": true in that table's policy
    environment = {**READER, "READ_ACCESS": "public", "TABLE_POLICIES": policies}
    # When the reader's settings are validated / Then it refuses to start, naming the table
    with pytest.raises(ServiceViewServedPublicly, match=r"^articles: .*\"public\": true"):
        ReaderSettings.model_validate(environment)


@pytest.mark.parametrize(
    ("read_access", "policies"),
    [
        ("public", '{"articles": {"role": "service", "public": true}}'),
        ("public", '{"articles": {"role": "anon"}}'),
        ("iam", '{"articles": {"role": "service"}}'),
    ],
)
def test_a_reader_serves_a_service_view_when_said_so_or_behind_iam(
    read_access: str, policies: str
) -> None:
    # Given an explicit "public": true, an anon view, or reads that need IAM
    environment = {**READER, "READ_ACCESS": read_access, "TABLE_POLICIES": policies}
    # When validated / Then the reader starts
    assert ReaderSettings.model_validate(environment).policy("articles").key == "id"


def test_only_the_reader_refuses_what_only_the_reader_would_publish() -> None:
    # Given a service view without "public" (the consumer caches it; IAM reads may serve it)
    environment = {
        "CACHED_TABLES": "articles",
        "TABLE_POLICIES": '{"articles": {"role": "service"}}',
        "QUEUE_URL": "q",
        "WEBHOOK_SECRET_NAME": "s",
        "MAX_MESSAGE_BYTES": "1048576",
    }
    # When the receiver's settings are validated / Then they are accepted
    assert ReceiverSettings.model_validate(environment).policy("articles").role == "service"
