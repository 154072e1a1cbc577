"""CPU of the routing layer's bookkeeping per call, in a loop (no upstream, no HTTP).

What the pipeline does around each upstream call (gateway/pipeline.py,
`_call_upstreams`): the retry budget, the order, the breaker check, the
credential, the concurrency slot, the deadline, the attempt list written with
the record, the breaker and latency bookkeeping and the Prometheus series.
Run after `make bench` (it reads the bench database's catalog: `bench-model`):

    PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) .venv/bin/python bench/routing_cost.py
"""

import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/beluga_bench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("SECRET_KEY", "routing-cost-not-secret")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import django  # noqa: E402

django.setup()

import orjson  # noqa: E402

from catalog.selectors import model_get  # noqa: E402
from gateway import metrics, pipeline  # noqa: E402
from gateway.routing import breakers  # noqa: E402
from gateway.routing.budget import retry_budget  # noqa: E402
from gateway.routing.plan import candidates, latency_observed, with_credential  # noqa: E402
from gateway.routing.slots import slot_give_back, slot_take  # noqa: E402

CALLS = 20_000


def one_call(model) -> None:
    retry_budget.call_started()
    for candidate, route in candidates(model, fallback=lambda slug: None):
        admission = breakers.admit(upstream_id=route.upstream_id, model=candidate.slug)
        attempt = with_credential(route)
        slot = slot_take(attempt)
        attempt = pipeline._within_deadline(attempt, time.perf_counter() + 900)
        pipeline.release_db_connection()
        entry = {"upstream": attempt.upstream_name, "model": candidate.slug, "credential": attempt.credential}
        orjson.dumps([{**entry, "status": 200, "outcome": "ok", "latency_ms": 3}])
        metrics.attempt_observed(upstream=attempt.upstream_name, outcome="ok", seconds=0.003)
        slot_give_back(attempt, slot)
        breakers.succeeded(admission)
        latency_observed(upstream_id=attempt.upstream_id, model=candidate.slug, ms=3)
        metrics.usage_observed(model=candidate.slug, cost_micro_usd=10, input_tokens=10, output_tokens=20)
        break


def main() -> None:
    model = model_get(slug="bench-model")
    if model is None:
        sys.exit("bench-model is not in this database: run `make bench` first")
    for _ in range(2000):
        one_call(model)
    started = time.process_time()
    for _ in range(CALLS):
        one_call(model)
    print(f"routing bookkeeping: {1e6 * (time.process_time() - started) / CALLS:.1f} us of CPU per call")


if __name__ == "__main__":
    main()
