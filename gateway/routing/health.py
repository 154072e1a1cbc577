"""Each upstream's health as /v1/health, the admin and /metrics report it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UpstreamState:
    name: str
    kind: str
    state: str  # "healthy", "degraded" (some breaker of one of its models is open, or recent failures), "open"
    models_open: tuple[str, ...] = ()  # public model ids whose upstream+model breaker is open
    requests: int = 0  # attempts in the breaker's window
    failures: int = 0


def upstream_states() -> list[UpstreamState]:
    """Every enabled upstream, by name. Placeholder until the breakers land: all healthy."""
    from catalog.models import Upstream

    return [UpstreamState(name=u.name, kind=u.kind, state="healthy") for u in Upstream.objects.filter(enabled=True)]
