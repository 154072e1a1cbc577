"""Writes of the billing app: usage records (the ledger joins them in a later change)."""

from __future__ import annotations

from billing.models import UsageRecord


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
    status_code: int,
    error_type: str = "",
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    usage_estimated: bool = False,
    client_disconnected: bool = False,
    cost_micro_usd: int = 0,
    latency_ms: int = 0,
    upstream_latency_ms: int = 0,
) -> UsageRecord:
    """Record one upstream call. One INSERT in autocommit; never updated afterwards."""
    return UsageRecord.objects.create(
        request_id=request_id,
        user_id=user_id,
        api_key_id=api_key_id,
        model=model,
        upstream=upstream,
        upstream_model=upstream_model,
        endpoint=endpoint,
        stream=stream,
        status_code=status_code,
        error_type=error_type,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        usage_estimated=usage_estimated,
        client_disconnected=client_disconnected,
        cost_micro_usd=cost_micro_usd,
        latency_ms=latency_ms,
        upstream_latency_ms=upstream_latency_ms,
    )
