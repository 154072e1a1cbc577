"""Writes to the catalog that other code calls: the price history.

A model's prices change through the admin or a catalog import; both save the
row and then call `model_prices_record`, which appends a PriceChange when the
prices differ from the latest one recorded. New calls pick the new prices up
with the next catalog snapshot; calls already routed keep the ones they had.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from catalog.models import AIModel, PriceChange

if TYPE_CHECKING:
    from accounts.models import User


def model_prices_record(
    *, model: AIModel, source: PriceChange.Source | str, changed_by: User | None = None
) -> PriceChange | None:
    """Append `model`'s current prices to its history, unless they are the latest entry already.

    Call it after saving the model, in the same transaction. Returns the new
    entry, or None when the prices did not change.
    """
    prices = model.prices()
    latest = PriceChange.objects.filter(model=model).order_by("-changed_at", "-id").values_list("prices", flat=True)
    if latest.first() == prices:
        return None
    user = changed_by if changed_by is not None and changed_by.is_authenticated else None
    return PriceChange.objects.create(model=model, prices=prices, changed_by=user, source=source)


def upstream_credential_refused(*, upstream_id: int, label: str) -> None:
    """Mark a credential the upstream refused (401/403): out of rotation everywhere once the catalog
    snapshots reload, and flagged in the admin until someone clears `failed_at`."""
    from django.utils import timezone

    from catalog.models import Upstream, UpstreamCredential
    from catalog.selectors import PRIMARY_CREDENTIAL

    now = timezone.now()
    if label == PRIMARY_CREDENTIAL:
        Upstream.objects.filter(id=upstream_id, api_key_failed_at__isnull=True).update(api_key_failed_at=now)
    else:
        UpstreamCredential.objects.filter(upstream_id=upstream_id, label=label, failed_at__isnull=True).update(
            failed_at=now
        )
