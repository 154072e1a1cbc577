"""Import and export of the catalog (upstreams, models, routes) as catalog files.

The file format is described in catalog/catalog_file.py. Rules of an import:

- It is idempotent: upstreams are matched by name, models by id, routes by
  (model, upstream). Running the same file twice changes nothing the second time.
- A key absent from an entry leaves that field as it is on an existing row and
  takes the model default on a new one. So it is within `price`: a price left
  out is kept on update and not set (NULL) on create, `null` removes it, and a
  price is 0 (free) only where the file says 0. A model lacking a price its
  category needs is refused until it has one (catalog.models.REQUIRED_PRICES).
  Within `list_price`, absent keys are not known (null): the mapping states the whole list price.
- A model whose prices the import creates or changes gets a PriceChange
  (source "import") in its price history; not when run by a migration (`apps`),
  which records history itself.
- Rows and routes not named in the file are left alone; nothing is deleted.
  So are an upstream's credentials: they are matched by (upstream, label), and
  one the file does not list stays as it is (remove it in the admin).
- A route's upstream must be in the file or already in the database; so must
  each of a model's `fallbacks`.
- An `api_key` of "***" (what catalog_export writes for a literal secret)
  keeps the stored key, so an exported file can be imported back; this holds
  for an upstream's `credentials` too.
- A key the upstream refused (401/403) goes back into rotation when the file
  gives it a new value; the same value leaves the refusal to be cleared in the admin.
- The whole file is validated and written in one transaction: every problem is
  reported, each naming its path (`models[3].price.input_per_1m: ...`), and
  nothing is saved if there is any.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.apps import apps as django_apps
from django.db import DEFAULT_DB_ALIAS, transaction

from catalog.catalog_file import (
    CAPABILITIES,
    OPTIONAL_PRICE_KEYS,
    PRICE_KEYS,
    REDACTED,
    CatalogFileError,
    CredentialSpec,
    ModelSpec,
    UpstreamSpec,
    catalog_file_validate,
)
from catalog.models import AIModel, PriceChange, Upstream
from catalog.services import model_prices_record


@dataclass
class KindCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def __str__(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"


@dataclass
class ImportResult:
    upstreams: KindCounts = field(default_factory=KindCounts)
    models: KindCounts = field(default_factory=KindCounts)
    routes: KindCounts = field(default_factory=KindCounts)
    credentials: KindCounts = field(default_factory=KindCounts)
    dry_run: bool = False

    def summary(self) -> str:
        text = (
            f"upstreams: {self.upstreams}; models: {self.models}; routes: {self.routes}; "
            f"credentials: {self.credentials}"
        )
        return f"{text} (dry run, nothing saved)" if self.dry_run else text


def _apply(obj: Any, fields: dict[str, Any]) -> bool:
    """Set the fields that differ; True if any did."""
    changed = False
    for name, value in fields.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed = True
    return changed


def _upsert(model_class: Any, existing: Any, lookup: dict, fields: dict, counts: KindCounts, using: str) -> Any:
    # Instances are built with setattr, not create(**kwargs): a field the file
    # knows but a historical model (in a migration) lacks is then ignored.
    if existing is None:
        obj = model_class()
        for name, value in {**lookup, **fields}.items():
            setattr(obj, name, value)
        obj.save(using=using)
        counts.created += 1
        return obj
    if _apply(existing, fields):
        existing.save(using=using)
        counts.updated += 1
    else:
        counts.unchanged += 1
    return existing


class _Writer:
    """Writes validated specs with the given model classes; errors that need the database are collected."""

    def __init__(self, *, apps: Any, using: str, result: ImportResult) -> None:
        registry = self.registry = apps if apps is not None else django_apps
        self.AIModel = registry.get_model("catalog", "AIModel")
        self.Route = registry.get_model("catalog", "Route")
        self.Upstream = registry.get_model("catalog", "Upstream")
        # Looked up only for a file with credentials: a migration's registry may predate the model.
        self.UpstreamCredential: Any = None
        self.using = using
        self.result = result
        # Historical models (a migration's registry) predate the price history.
        self.record_prices = apps is None
        # Before migration 0012 a list price could not be empty: an unknown one was stored as 0.
        self.list_prices_not_null = {
            f.name for f in self.AIModel._meta.concrete_fields if f.name.endswith("_list") and not f.null
        }
        self.errors: list[str] = []
        self.upstreams: dict[str, Any] = {}

    def write_upstreams(self, specs: list[UpstreamSpec]) -> None:
        rows = self.Upstream.objects.using(self.using).filter(name__in=[s.name for s in specs])
        self.upstreams = {u.name: u for u in rows}
        credentials = self._stored_credentials(specs)
        for spec in specs:
            fields = dict(spec.fields)
            current = self.upstreams.get(spec.name)
            if not self._stored_key_kept(fields, current, spec.path, f"there is no upstream {spec.name!r} yet"):
                continue
            if current is None and "base_url" not in fields:
                self.errors.append(f"{spec.path}.base_url: is required for a new upstream")
                continue
            _refusal_cleared(fields, current, "api_key_failed_at")
            lookup = {"name": spec.name}
            upstream = _upsert(self.Upstream, current, lookup, fields, self.result.upstreams, self.using)
            self.upstreams[spec.name] = upstream
            for credential in spec.credentials or ():
                self.write_credential(credential, upstream, credentials.get((upstream.pk, credential.label)))

    def _stored_key_kept(self, fields: dict, current: Any, path: str, missing: str) -> bool:
        """`***` keeps the stored key: it leaves `fields`; False (with an error) when none is stored."""
        if fields.get("api_key") != REDACTED:
            return True
        if current is None:
            self.errors.append(
                f"{path}.api_key: {REDACTED!r} keeps the stored key, but {missing}; give the key or env:VAR"
            )
            return False
        del fields["api_key"]
        return True

    def _stored_credentials(self, specs: list[UpstreamSpec]) -> dict[tuple[int, str], Any]:
        """The stored credentials of the file's upstreams, by (upstream id, label); none asked, no query."""
        if not any(spec.credentials for spec in specs):
            return {}
        self.UpstreamCredential = self.registry.get_model("catalog", "UpstreamCredential")
        ids = [u.pk for u in self.upstreams.values()]
        rows = self.UpstreamCredential.objects.using(self.using).filter(upstream__in=ids)
        return {(c.upstream_id, c.label): c for c in rows}

    def write_credential(self, spec: CredentialSpec, upstream: Any, current: Any) -> None:
        fields = dict(spec.fields)
        missing = f"upstream {upstream.name!r} has no credential {spec.label!r} yet"
        if not self._stored_key_kept(fields, current, spec.path, missing):
            return
        if current is None and "api_key" not in fields:
            self.errors.append(f"{spec.path}.api_key: is required for a new credential")
            return
        _refusal_cleared(fields, current, "failed_at")
        lookup = {"upstream": upstream, "label": spec.label}
        _upsert(self.UpstreamCredential, current, lookup, fields, self.result.credentials, self.using)

    def _model_named(self, spec: ModelSpec, written: dict, key: str):
        """The model an `alias_of` or `variant_of` names: one written above in this file or in the
        database; None to clear it; False (with an error) when there is none, or it is an alias or a
        variant itself."""
        slug = spec.fields[key]
        if slug is None:
            return None
        target = written.get(slug) or self.AIModel.objects.using(self.using).filter(slug=slug).first()
        if target is None:
            self.errors.append(f"{spec.path}.{key}: no model {slug!r} above it in this file or in the database")
            return False
        # getattr: a migration's historical model may predate aliases and variants.
        if getattr(target, "alias_of_id", None) is not None or getattr(target, "variant_of_id", None) is not None:
            self.errors.append(f"{spec.path}.{key}: {slug!r} is itself an alias or a variant; name its model")
            return False
        return target

    def write_models(self, specs: list[ModelSpec]) -> None:
        wanted = {r.upstream for m in specs for r in m.routes} - self.upstreams.keys()
        self.upstreams.update({u.name: u for u in self.Upstream.objects.using(self.using).filter(name__in=wanted)})
        models = {m.slug: m for m in self.AIModel.objects.using(self.using).filter(slug__in=[s.slug for s in specs])}
        routes = {
            (r.model_id, r.upstream_id): r
            for r in self.Route.objects.using(self.using).filter(model__in=[m.pk for m in models.values()])
        }
        written: dict[str, Any] = {}  # models written so far in this file, by id (alias and variant targets)
        fallbacks = {slug for spec in specs for slug in spec.fields.get("fallbacks", ())}
        known = {spec.slug for spec in specs} | set(
            self.AIModel.objects.using(self.using).filter(slug__in=fallbacks).values_list("slug", flat=True)
        )
        for spec in specs:
            for i, slug in enumerate(spec.fields.get("fallbacks", ())):
                if slug not in known:
                    self.errors.append(f"{spec.path}.fallbacks[{i}]: no model {slug!r} in this file or the database")
            current = models.get(spec.slug)
            alias = "alias_of" in spec.fields and spec.fields["alias_of"] is not None
            if current is None and "vendor" not in spec.fields and not alias:
                self.errors.append(f"{spec.path}.vendor: is required for a new model")
                continue
            fields = spec.fields if current else {"name": spec.slug, **spec.fields}
            if "alias_of" in fields:
                target = self._model_named(spec, written, "alias_of")
                if target is False:
                    continue
                fields = {**fields, "alias_of": target}
                if current is None and "vendor" not in fields and target is not None:
                    fields = {**fields, "vendor": target.vendor, "category": target.category}
            if "variant_of" in fields:
                base = self._model_named(spec, written, "variant_of")
                if base is False:
                    continue
                has_variants = current is not None and hasattr(current, "variants") and current.variants.exists()
                if base is not None and has_variants:
                    self.errors.append(f"{spec.path}.variant_of: {spec.slug!r} has variants of its own")
                    continue
                fields = {**fields, "variant_of": base}
            unknown = {name for name in self.list_prices_not_null if name in fields and fields[name] is None}
            if unknown:
                fields = {**fields, **dict.fromkeys(unknown, 0)}
            prices_before = current.prices() if current is not None and self.record_prices else None
            model = _upsert(self.AIModel, current, {"slug": spec.slug}, fields, self.result.models, self.using)
            written[model.slug] = model
            if self.record_prices and model.prices() != prices_before:
                model_prices_record(model=model, source=PriceChange.Source.IMPORT)
            for route_spec in spec.routes:
                upstream = self.upstreams.get(route_spec.upstream)
                if upstream is None:
                    self.errors.append(
                        f"{route_spec.path}.upstream: no upstream named {route_spec.upstream!r} "
                        "in this file or the database"
                    )
                    continue
                current_route = routes.get((model.pk, upstream.pk))
                # A new route calls the upstream by the public id unless told otherwise.
                fields = route_spec.fields if current_route else {"upstream_model": spec.slug, **route_spec.fields}
                lookup = {"model": model, "upstream": upstream}
                _upsert(self.Route, current_route, lookup, fields, self.result.routes, self.using)


def _refusal_cleared(fields: dict, current: Any, flag: str) -> None:
    """A refusal (401/403) was of the stored key: a new key clears it. getattr: a migration's
    historical model may predate the flag."""
    if (
        current is not None
        and getattr(current, flag, None)
        and fields.get("api_key", current.api_key) != current.api_key
    ):
        fields[flag] = None


def catalog_import(
    *, data: dict, apps: Any = None, dry_run: bool = False, using: str = DEFAULT_DB_ALIAS
) -> ImportResult:
    """Create or update the upstreams, models and routes a catalog file describes.

    `apps` is a migration's app registry (historical models); without it the
    real models are used and this process's catalog snapshot is cleared after.
    `dry_run` does all the work in a transaction and rolls it back.
    Raises CatalogFileError naming every invalid path; nothing is saved then.
    """
    upstream_specs, model_specs = catalog_file_validate(data)
    result = ImportResult(dry_run=dry_run)
    with transaction.atomic(using=using):
        writer = _Writer(apps=apps, using=using, result=result)
        writer.write_upstreams(upstream_specs)
        writer.write_models(model_specs)
        if writer.errors:
            raise CatalogFileError(writer.errors)
        if dry_run:
            transaction.set_rollback(True, using=using)
    if apps is None and not dry_run:
        from catalog.selectors import catalog_cache_clear

        catalog_cache_clear()
    return result


# --- export ------------------------------------------------------------------


def _credential_export(value: str) -> str:
    if not value or value.startswith("env:"):
        return value
    return REDACTED


def _sale_prices(obj: AIModel) -> dict:
    """Every sale price that is set, 0 (free) included; one not set is left out."""
    prices = {key: getattr(obj, key) for key in PRICE_KEYS + OPTIONAL_PRICE_KEYS if getattr(obj, key) is not None}
    if obj.per_image_by_option:
        prices["per_image_by_option"] = obj.per_image_by_option
    return prices


def _list_prices(obj: AIModel) -> dict[str, int]:
    """Every list price that is known, 0 included; an unknown one is left out."""
    keys = PRICE_KEYS + OPTIONAL_PRICE_KEYS
    return {key: getattr(obj, key + "_list") for key in keys if getattr(obj, key + "_list") is not None}


def _upstream_export(u: Upstream) -> dict:
    row = {
        "name": u.name,
        "kind": u.kind,
        "base_url": u.base_url,
        "api_key": _credential_export(u.api_key),
        "connect_timeout": u.connect_timeout,
        "first_byte_timeout": u.first_byte_timeout,
        "read_timeout": u.read_timeout,
        "total_timeout": u.total_timeout,
        "max_concurrency": u.max_concurrency,
        "health_probe": u.health_probe,
        "enabled": u.enabled,
    }
    # A refusal by the upstream (failed_at) is a runtime mark, not configuration: not exported.
    credentials = sorted(u.credentials.all(), key=lambda c: c.label)
    if credentials:
        row["credentials"] = [
            {"label": c.label, "api_key": _credential_export(c.api_key), "enabled": c.enabled} for c in credentials
        ]
    return row


def catalog_export() -> dict:
    """The whole catalog in the import format. Literal credentials become "***"."""
    upstreams = [_upstream_export(u) for u in Upstream.objects.order_by("name").prefetch_related("credentials")]
    models = []
    rows = AIModel.objects.select_related("alias_of", "variant_of").prefetch_related("routes__upstream")
    # Aliases and variants after the models they name, so that the file imports in order.
    for m in sorted(rows, key=lambda m: (m.alias_of_id is not None or m.variant_of_id is not None, m.vendor, m.slug)):
        models.append(
            {
                "id": m.slug,
                "name": m.name,
                "vendor": m.vendor,
                "category": m.category,
                "description": m.description,
                "enabled": m.enabled,
                "context_window": m.context_window,
                "max_output_tokens": m.max_output_tokens,
                "capabilities": {key: getattr(m, field_name) for key, field_name in CAPABILITIES.items()},
                "price": _sale_prices(m),
                "list_price": _list_prices(m),
                **({"media": m.media_options} if m.media_options else {}),
                "routing": m.routing,
                **({"fallbacks": m.fallbacks} if m.fallbacks else {}),
                **({"alias_of": m.alias_of.slug} if m.alias_of_id else {}),
                **({"variant_of": m.variant_of.slug} if m.variant_of_id else {}),
                **({"request_defaults": m.request_defaults} if m.request_defaults else {}),
                **({"request_overrides": m.request_overrides} if m.request_overrides else {}),
                "routes": [
                    {
                        "upstream": r.upstream.name,
                        "upstream_model": r.upstream_model,
                        "priority": r.priority,
                        "weight": r.weight,
                        "enabled": r.enabled,
                        **({"params": r.params} if r.params else {}),
                    }
                    for r in sorted(m.routes.all(), key=lambda r: (r.priority, r.pk))
                ],
            }
        )
    return {"upstreams": upstreams, "models": models}
