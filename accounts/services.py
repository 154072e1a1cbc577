"""Everything that changes accounts, keys and plans, and the API-key check.

The key check runs on every API call, so it reads the shared cache (Redis in
production) and only falls back to the database on a miss. Anything that makes
a key unusable (revocation, a plan or user change) marks the cache entry for a
fresh database read, in the same call and again when its transaction commits,
so every instance sees the change on its next request.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, Plan, User
from billing.services import balance_open

KEY_PREFIX = "bapi_"
_DISPLAY_PREFIX_LEN = 12
_USED_WRITE_SECONDS = 60


class KeyRejected(Exception):
    """The presented key is missing, unknown, revoked, expired, or its user is inactive."""


@dataclass(frozen=True, slots=True)
class AuthenticatedKey:
    """What the request pipeline needs to know about the caller, cacheable as a tuple."""

    key_id: int
    user_id: int
    chat_rpm: int  # the plan's, the account's override, or the key's own when lower
    image_rpm: int
    expires_at: float | None  # epoch seconds
    prepaid: bool = True  # the plan requires a balance
    spend_limit_micro_usd: int | None = None  # the key's budget per period
    spend_limit_period: str = "month"
    allowed_models: tuple[str, ...] = ()  # empty: every model

    def as_tuple(self) -> tuple:
        return (
            self.key_id,
            self.user_id,
            self.chat_rpm,
            self.image_rpm,
            self.expires_at,
            self.prepaid,
            self.spend_limit_micro_usd,
            self.spend_limit_period,
            self.allowed_models,
        )

    def allows_model(self, slug: str) -> bool:
        return not self.allowed_models or slug in self.allowed_models


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def _cache_key(hashed: str) -> str:
    # "v3": markers became unique per invalidation; instances of the previous release
    # keep reading their own "v2" entries, which invalidation still marks (_legacy_cache_key).
    return f"apikey:v3:{hashed}"


def _legacy_cache_key(hashed: str) -> str:
    return f"apikey:v2:{hashed}"


# --- plans ---------------------------------------------------------------


def plan_default() -> Plan:
    """The plan new accounts get (see PlanQuerySet.default)."""
    return Plan.objects.default()


def plan_save(*, plan: Plan) -> None:
    """Save a plan; a plan marked default takes that over from the previous default (there is one)."""
    with transaction.atomic():
        if plan.is_default:
            Plan.objects.filter(is_default=True).exclude(pk=plan.pk).update(is_default=False)
        plan.save()


def user_create(*, email: str, password: str | None = None, plan: Plan | None = None) -> User:
    """A new account on `plan` (the default plan), with its balance and the plan's sign-up credit."""
    return User.objects.create_user(email=email, password=password, plan=plan)


def user_open(*, user: User) -> User:
    """Save a new, unsaved user: on the default plan unless it has one, with its balance and the plan's sign-up credit.

    Every account is made here: `user_create` (sign-up, the CLI, bootstrap), the
    manager's `create_user`/`create_superuser` (`manage.py createsuperuser`) and
    the admin's add form.
    """
    with transaction.atomic():
        if user.plan_id is None:
            user.plan = plan_default()
        user.save(force_insert=True)
        balance_open(user_id=user.id, signup_grant_micro_usd=user.plan.signup_grant_micro_usd)
    return user


def user_set_plan(*, user: User, plan: Plan) -> None:
    user.plan = plan
    user.save(update_fields=["plan"])
    user_keys_cache_clear(user=user)


def user_set_limits(*, user: User, chat_rpm: int | None = None, image_rpm: int | None = None) -> None:
    """Per-account request limits (Enterprise contracts); None leaves that limit as it is."""
    if chat_rpm is not None:
        user.chat_rpm_override = chat_rpm
    if image_rpm is not None:
        user.image_rpm_override = image_rpm
    user.save(update_fields=["chat_rpm_override", "image_rpm_override"])
    user_keys_cache_clear(user=user)


def user_keys_cache_clear(*, user: User) -> None:
    """Forget cached key entries of a user (plan, limits or active flag changed)."""
    hashes = list(ApiKey.objects.filter(user=user).values_list("hashed_key", flat=True))
    if hashes:
        _keys_invalidate(hashes)


def plan_cache_clear(*, plan: Plan) -> None:
    """A plan's limits changed: forget every cached key of its users."""
    hashes = list(ApiKey.objects.filter(user__plan=plan).values_list("hashed_key", flat=True))
    for start in range(0, len(hashes), 500):
        _keys_invalidate(hashes[start : start + 500])


# A cache entry that says "look in the database again". Invalidation writes it
# (rather than deleting) so that a lookup which read the database before the
# change committed cannot put its stale answer back: a lookup after a miss only
# *adds* to the cache, and the marker is in the way; a lookup after a marker
# stores its answer only if that same marker is still there
# (cache.set_if_unchanged), and each invalidation writes a marker of its own.
_RECHECK = "recheck"
_LEGACY_RECHECK = "recheck"  # what the previous release's entries (_legacy_cache_key) expect


def _recheck_marker() -> str:
    return f"{_RECHECK}:{secrets.token_hex(8)}"


def _is_recheck(cached) -> bool:
    return isinstance(cached, str) and cached.startswith(_RECHECK)


def _keys_invalidate(hashes: list[str]) -> None:
    """Make every instance re-read these keys, now and again when the current transaction commits."""

    def write() -> None:
        # Both shapes: during a rolling deploy, instances of the previous release must see it too.
        marker = _recheck_marker()
        markers = {_cache_key(h): marker for h in hashes} | {_legacy_cache_key(h): _LEGACY_RECHECK for h in hashes}
        cache.set_many(markers, settings.BELUGA["KEY_CACHE_SECONDS"])

    write()
    transaction.on_commit(write)


# --- keys ----------------------------------------------------------------


def api_key_create(*, user: User, name: str, expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full key, which is never stored or shown again."""
    raw_key = KEY_PREFIX + secrets.token_urlsafe(32)  # 43 characters, 256 random bits
    hashed = hash_key(raw_key)
    api_key = ApiKey.objects.create(
        user=user,
        name=name.strip() or "API key",
        prefix=raw_key[:_DISPLAY_PREFIX_LEN],
        hashed_key=hashed,
        expires_at=expires_at,
    )
    _keys_invalidate([hashed])  # drop a cached "unknown key" answer, however unlikely
    return api_key, raw_key


def api_key_revoke(*, user: User, key_id: int) -> ApiKey:
    """Revoke one of the user's own keys. Raises ApiKey.DoesNotExist for anyone else's."""
    with transaction.atomic():
        api_key = ApiKey.objects.select_for_update().get(id=key_id, user=user)
        if api_key.revoked_at is None:
            api_key.revoked_at = timezone.now()
            api_key.save(update_fields=["revoked_at"])
    _keys_invalidate([api_key.hashed_key])
    return api_key


def api_key_set_controls(
    *,
    user: User,
    key_id: int,
    spend_limit_micro_usd: int | None,
    spend_limit_period: str,
    allowed_models: list[str],
    chat_rpm: int | None,
) -> ApiKey:
    """The owner's controls on one of their keys: budget, allowed models, a lower request rate.

    Raises ApiKey.DoesNotExist for anyone else's key. A changed budget starts
    its count again from the key's usage records (billing keeps the count).
    """
    from billing.services import key_budget_reset

    with transaction.atomic():
        api_key = ApiKey.objects.select_for_update().get(id=key_id, user=user)
        budget_changed = (api_key.spend_limit_micro_usd, api_key.spend_limit_period) != (
            spend_limit_micro_usd,
            spend_limit_period,
        )
        api_key.spend_limit_micro_usd = spend_limit_micro_usd
        api_key.spend_limit_period = spend_limit_period
        api_key.allowed_models = sorted(set(allowed_models))
        api_key.chat_rpm_override = chat_rpm
        api_key.save(
            update_fields=["spend_limit_micro_usd", "spend_limit_period", "allowed_models", "chat_rpm_override"]
        )
        if budget_changed:
            key_budget_reset(api_key_id=api_key.id)
    _keys_invalidate([api_key.hashed_key])
    return api_key


def api_key_authenticate(*, raw_key: str) -> AuthenticatedKey:
    """The caller behind a raw key, or KeyRejected. Cache first, database on a miss."""
    hashed = _hash_checked(raw_key)
    cache_key = _cache_key(hashed)
    cached = cache.get(cache_key)
    if cached is None:
        cached = _key_lookup(hashed)
        cache.add(cache_key, cached, settings.BELUGA["KEY_CACHE_SECONDS"])
    elif _is_recheck(cached):
        # The marker may predate the change's commit, so this read may still see the old
        # state: it is kept only if no later marker (written at the commit) replaced this one.
        marker, cached = cached, _key_lookup(hashed)
        cache.set_if_unchanged(cache_key, marker, cached, settings.BELUGA["KEY_CACHE_SECONDS"])
    if cached is False:
        raise KeyRejected
    return api_key_admitted(AuthenticatedKey(*cached))


def api_key_admitted(key: AuthenticatedKey) -> AuthenticatedKey:
    """`key`, unless it has expired since it was read; notes its use."""
    if key.expires_at is not None and key.expires_at <= time.time():
        raise KeyRejected
    _touch_last_used(key.key_id)
    return key


def _hash_checked(raw_key: str) -> str:
    if not raw_key or not raw_key.startswith(KEY_PREFIX) or len(raw_key) > 200:
        raise KeyRejected
    return hash_key(raw_key)


# --- this process's copy of the keys it has checked ---------------------------
#
# With Redis, the rate-limit count of a request also reads the key's shared
# cache entry, in the same call (accounts.limits.key_admit). A key this process
# has checked is kept here with the bytes of that entry, and is used only while
# the entry is still those bytes: revoking a key, or changing its plan, limits
# or user, rewrites the entry (_keys_invalidate), so the next request on every
# instance reads the key again, as with the shared cache alone. A key this
# process knows then costs one Redis call per request instead of two.

_local_keys: dict[str, tuple[AuthenticatedKey, bytes]] = {}
_LOCAL_KEYS_MAX = 10_000


def api_key_local(*, raw_key: str) -> tuple[str, tuple[AuthenticatedKey, bytes] | None]:
    """The key's hash, and this process's copy of the key with the shared entry it was made from."""
    hashed = _hash_checked(raw_key)
    return hashed, _local_keys.get(hashed)


def api_key_shared_entry_name(hashed: str) -> str:
    """The full Redis key of the key's shared cache entry."""
    return cache.make_key(_cache_key(hashed))


def api_key_local_keep(*, hashed: str, key: AuthenticatedKey, entry: bytes | None) -> None:
    """Keep `key` in this process while the shared entry stays `entry`, if `entry` is the same key."""
    if entry is None:
        return
    try:
        # Django's Redis cache pickles what it stores; these bytes come from Beluga's own Redis.
        same = pickle.loads(entry) == key.as_tuple()  # noqa: S301
    except Exception:  # noqa: BLE001 - not an entry this release wrote: keep nothing
        same = False
    if not same:
        _local_keys.pop(hashed, None)
        return
    if len(_local_keys) >= _LOCAL_KEYS_MAX:
        _local_keys.clear()
    _local_keys[hashed] = (key, entry)


def api_key_local_forget(*, hashed: str | None = None) -> None:
    """Drop this process's copy of one key (or of every key)."""
    if hashed is None:
        _local_keys.clear()
    else:
        _local_keys.pop(hashed, None)


_last_used_seen: dict[int, float] = {}


def _touch_last_used(key_id: int) -> None:
    """Write last_used_at at most once a minute per key across all instances.

    last_used_at is for people, so a minute is precise enough. A local clock
    skips the shared-cache round trip on nearly every request; the cache.add
    then elects one process per minute to do the UPDATE.
    """
    now = time.monotonic()
    if now - _last_used_seen.get(key_id, -_USED_WRITE_SECONDS) < _USED_WRITE_SECONDS:
        return
    _last_used_seen[key_id] = now
    if cache.add(f"apikey-used:{key_id}", 1, _USED_WRITE_SECONDS):
        ApiKey.objects.filter(id=key_id).update(last_used_at=timezone.now())


def _key_lookup(hashed: str) -> tuple | bool:
    row = (
        ApiKey.objects.select_related("user__plan")
        .filter(hashed_key=hashed, revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    # The database matched on the hash already; compare again in constant time
    # so that no timing difference depends on the stored value.
    if row is None or not hmac.compare_digest(row.hashed_key, hashed):
        return False
    chat_rpm = row.user.chat_rpm
    if row.chat_rpm_override is not None:
        chat_rpm = min(chat_rpm, row.chat_rpm_override)
    return AuthenticatedKey(
        key_id=row.id,
        user_id=row.user_id,
        chat_rpm=chat_rpm,
        image_rpm=row.user.image_rpm,
        expires_at=row.expires_at.timestamp() if row.expires_at else None,
        prepaid=row.user.plan.prepaid,
        spend_limit_micro_usd=row.spend_limit_micro_usd,
        spend_limit_period=row.spend_limit_period,
        allowed_models=tuple(row.allowed_models or ()),
    ).as_tuple()
