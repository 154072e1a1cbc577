"""Writes of the billing app: usage records (the ledger joins them in a later change)."""

from __future__ import annotations

from django.db import connection
from django.utils import timezone

from billing.models import UsageRecord

# The columns written for every upstream call, in INSERT order.
_USAGE_FIELDS = (
    "request_id",
    "user_id",
    "api_key_id",
    "model",
    "upstream",
    "upstream_model",
    "endpoint",
    "protocol",
    "upstream_kind",
    "stream",
    "status_code",
    "error_type",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "usage_estimated",
    "client_disconnected",
    "cost_micro_usd",
    "latency_ms",
    "upstream_latency_ms",
    "created_at",
)
_usage_insert_sql: str | None = None


def _usage_insert() -> str:
    # Built from the model's own metadata, so a renamed column cannot drift.
    global _usage_insert_sql
    if _usage_insert_sql is None:
        opts = UsageRecord._meta
        columns = ", ".join(connection.ops.quote_name(opts.get_field(f).column) for f in _USAGE_FIELDS)
        placeholders = ", ".join(["%s"] * len(_USAGE_FIELDS))
        _usage_insert_sql = (
            f"INSERT INTO {connection.ops.quote_name(opts.db_table)} ({columns}) VALUES ({placeholders})"  # noqa: S608 - names from model metadata, values bound
        )
    return _usage_insert_sql


def usage_record(
    *,
    request_id: str,
    user_id: int,
    api_key_id: int | None,
    model: str,
    upstream: str,
    upstream_model: str,
    endpoint: str,
    stream: bool,
    protocol: str = "",
    upstream_kind: str = "",
    status_code: int,
    error_type: str = "",
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cached_tokens: int = 0,
    cache_write_tokens: int = 0,
    reasoning_tokens: int = 0,
    usage_estimated: bool = False,
    client_disconnected: bool = False,
    cost_micro_usd: int = 0,
    latency_ms: int = 0,
    upstream_latency_ms: int = 0,
) -> None:
    """Record one upstream call: one INSERT in autocommit, never updated afterwards.

    A plain parameterised INSERT instead of `UsageRecord.objects.create`: this
    runs on every call, and building a model instance and compiling the
    statement cost more CPU than the rest of the pipeline's database work
    (see docs/performance.md).
    """
    values = (
        request_id,
        user_id,
        api_key_id,
        model,
        upstream,
        upstream_model,
        endpoint,
        protocol,
        upstream_kind,
        stream,
        status_code,
        error_type,
        prompt_tokens,
        completion_tokens,
        cached_tokens,
        cache_write_tokens,
        reasoning_tokens,
        usage_estimated,
        client_disconnected,
        cost_micro_usd,
        latency_ms,
        upstream_latency_ms,
        timezone.now(),
    )
    with connection.cursor() as cursor:
        cursor.execute(_usage_insert(), values)
