"""Prometheus metrics at /metrics (gateway/metrics.py): who may scrape, what the API's requests, upstream
attempts and usage add up to, the upstream-state gauge, and the totals of every gunicorn worker."""

from __future__ import annotations

import logging
import os
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from gateway import metrics
from gateway.routing.health import UpstreamState
from tests.fixtures_gateway import chat_body, post_chat
from tests.fixtures_servers import ON_POSTGRES_AND_REDIS, children_of, start_gunicorn, stop_process, wait_for

TOKEN = "metrics-token-" + "x" * 24


@pytest.fixture
def metrics_settings(settings):
    """`metrics_settings(token=..., networks=[...])`: the /metrics access rules for one test."""

    def configure(*, token: str = "", networks: tuple[str, ...] = ("127.0.0.1/32", "::1/128")) -> None:
        settings.BELUGA = {**settings.BELUGA, "METRICS_TOKEN": token, "METRICS_ALLOW_NETWORKS": list(networks)}

    configure()
    return configure


def scrape(client, **extra) -> str:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape, by (sample name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    """One sample's value, 0 when the series does not exist (yet)."""
    return samples(text).get((name, frozenset(labels.items())), 0.0)


# --- who may scrape ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "networks", "remote_addr", "headers", "allowed"),
    [
        pytest.param(TOKEN, (), "203.0.113.9", {"Authorization": f"Bearer {TOKEN}"}, True, id="right-token"),
        pytest.param(TOKEN, (), "203.0.113.9", {"Authorization": f"bearer  {TOKEN} "}, True, id="right-token-any-case"),
        pytest.param(TOKEN, (), "203.0.113.9", {"Authorization": f"Bearer {TOKEN}x"}, False, id="wrong-token"),
        pytest.param(TOKEN, (), "203.0.113.9", {"Authorization": TOKEN}, False, id="token-without-bearer"),
        pytest.param(TOKEN, (), "203.0.113.9", {}, False, id="no-token"),
        pytest.param("", (), "203.0.113.9", {"Authorization": "Bearer "}, False, id="unset-token-never-matches"),
        pytest.param("", ("127.0.0.1/32", "::1/128"), "127.0.0.1", {}, True, id="default-loopback"),
        pytest.param("", ("127.0.0.1/32", "::1/128"), "::1", {}, True, id="default-loopback-v6"),
        pytest.param("", ("10.0.0.0/8",), "10.20.30.40", {}, True, id="allowed-network"),
        pytest.param("", ("10.0.0.0/8",), "::ffff:10.20.30.40", {}, True, id="allowed-network-v4-mapped"),
        pytest.param("", ("10.0.0.0/8", "192.168.1.7"), "192.168.1.7", {}, True, id="allowed-single-address"),
        pytest.param("", ("10.0.0.0/8",), "192.168.1.8", {}, False, id="other-network"),
        pytest.param("", (), "127.0.0.1", {}, False, id="no-networks-not-even-loopback"),
        pytest.param("", ("127.0.0.1/32",), "127.0.0.1", {"X-Forwarded-For": "127.0.0.1"}, False, id="through-a-proxy"),
        pytest.param(
            "", ("127.0.0.1/32",), "127.0.0.1", {"X-Real-IP": "10.0.0.1"}, False, id="through-a-proxy-x-real-ip"
        ),
        pytest.param("", ("127.0.0.1/32",), "", {}, False, id="no-remote-address"),
        pytest.param(
            TOKEN,
            ("127.0.0.1/32",),
            "127.0.0.1",
            {"Authorization": "Bearer nope"},
            True,
            id="network-despite-wrong-token",
        ),
        pytest.param(
            TOKEN,
            ("127.0.0.1/32",),
            "127.0.0.1",
            {"X-Forwarded-For": "1.2.3.4", "Authorization": f"Bearer {TOKEN}"},
            True,
            id="token-through-a-proxy",
        ),
    ],
)
def test_metrics_answer_only_the_token_or_an_allowed_network(
    db, client, metrics_settings, token, networks, remote_addr, headers, allowed
):
    metrics_settings(token=token, networks=networks)
    response = client.get("/metrics", REMOTE_ADDR=remote_addr, headers=headers)
    if allowed:
        assert response.status_code == 200
        assert b"# TYPE beluga_http_requests_total counter" in response.content
        assert response["Cache-Control"] == "no-store"
    else:
        assert response.status_code == 403
        assert response["Content-Type"].startswith("text/plain")
        assert b"beluga_" not in response.content


def test_metrics_refuse_writes(db, client, metrics_settings):
    assert client.post("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 405
    assert client.head("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200


def test_a_bad_network_setting_is_named(db, client, metrics_settings):
    metrics_settings(networks=("10.0.0.0/33",))
    client.raise_request_exception = True
    with pytest.raises(Exception, match="BELUGA_METRICS_ALLOW_NETWORKS"):
        client.get("/metrics", REMOTE_ADDR="10.0.0.1")


def test_openmetrics_is_served_to_a_scraper_that_asks_for_it(db, client, metrics_settings):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.rstrip().endswith(b"# EOF")


# --- what is counted -----------------------------------------------------------------------------------


def test_a_chat_call_is_counted_under_its_endpoint_method_and_status(
    client, metrics_settings, chat_route, raw_key, fake_upstream
):
    ok = {"endpoint": "chat-completions", "method": "POST", "status": "200"}
    refused = {**ok, "status": "401"}
    before = scrape(client)

    assert post_chat(client, raw_key, chat_body()).status_code == 200
    assert post_chat(client, raw_key, chat_body(), path="/api/v1/chat/completions").status_code == 200
    assert post_chat(client, "sk-not-a-key", chat_body()).status_code == 401

    after = scrape(client)
    assert value(after, "beluga_http_requests_total", **ok) - value(before, "beluga_http_requests_total", **ok) == 2
    assert (
        value(after, "beluga_http_requests_total", **refused) - value(before, "beluga_http_requests_total", **refused)
        == 1
    )
    count = "beluga_http_request_duration_seconds_count"
    assert value(after, count, endpoint="chat-completions") - value(before, count, endpoint="chat-completions") == 3
    total = "beluga_http_request_duration_seconds_sum"
    assert value(after, total, endpoint="chat-completions") > value(before, total, endpoint="chat-completions")
    bucket = "beluga_http_request_duration_seconds_bucket"
    inf = value(after, bucket, endpoint="chat-completions", le="+Inf")
    assert inf - value(before, bucket, endpoint="chat-completions", le="+Inf") == 3
    assert value(after, bucket, endpoint="chat-completions", le="120.0") <= inf


def test_histogram_buckets_run_from_5_ms_to_2_minutes(db, client, metrics_settings):
    client.get("/v1/health")
    bounds = {
        dict(labels)["le"]
        for (name, labels) in samples(scrape(client))
        if name == "beluga_http_request_duration_seconds_bucket" and ("endpoint", "health") in labels
    }
    assert {"0.005", "0.1", "1.0", "60.0", "120.0", "+Inf"} <= bounds
    assert min(float(b) for b in bounds) == 0.005


def test_unknown_paths_and_invented_methods_cannot_grow_the_label_sets(db, client, metrics_settings):
    before = scrape(client)
    client.get(f"/v1/no-such-thing/{uuid.uuid4().hex}")
    client.generic("BREW", "/v1/models")
    after = scrape(client)
    other = {"endpoint": "other", "method": "GET", "status": "404"}
    assert (
        value(after, "beluga_http_requests_total", **other) - value(before, "beluga_http_requests_total", **other) == 1
    )
    brewed = [
        labels
        for (name, labels) in samples(after)
        if name == "beluga_http_requests_total" and ("method", "BREW") in labels
    ]
    assert brewed == []
    invented = {"endpoint": "models-list", "method": "other"}
    assert (
        sum(
            v
            for (name, labels), v in samples(after).items()
            if name == "beluga_http_requests_total" and set(invented.items()) <= labels
        )
        >= 1
    )
    assert "no-such-thing" not in after


def test_pages_and_scrapes_are_not_counted(db, client, metrics_settings):
    client.get("/login/")
    text = scrape(client)
    endpoints = {
        dict(labels).get("endpoint") for (name, labels) in samples(text) if name == "beluga_http_requests_total"
    }
    assert "metrics" not in endpoints and "login" not in endpoints


def test_upstream_attempts_are_counted_by_outcome_with_their_durations(db, client, metrics_settings):
    upstream = f"up-{uuid.uuid4().hex[:8]}"
    metrics.attempt_observed(upstream=upstream, outcome="ok", seconds=0.2)
    metrics.attempt_observed(upstream=upstream, outcome="ok", seconds=0.3)
    metrics.attempt_observed(upstream=upstream, outcome="http_429", seconds=0.004)
    metrics.attempt_observed(upstream=upstream, outcome="timeout", seconds=130.0)

    text = scrape(client)
    assert value(text, "beluga_upstream_attempts_total", upstream=upstream, outcome="ok") == 2
    assert value(text, "beluga_upstream_attempts_total", upstream=upstream, outcome="http_429") == 1
    assert value(text, "beluga_upstream_attempts_total", upstream=upstream, outcome="timeout") == 1
    name = "beluga_upstream_attempt_duration_seconds"
    assert value(text, f"{name}_count", upstream=upstream) == 4
    assert value(text, f"{name}_sum", upstream=upstream) == pytest.approx(130.504)
    assert value(text, f"{name}_bucket", upstream=upstream, le="0.005") == 1
    assert value(text, f"{name}_bucket", upstream=upstream, le="0.25") == 2
    assert value(text, f"{name}_bucket", upstream=upstream, le="120.0") == 3
    assert value(text, f"{name}_bucket", upstream=upstream, le="+Inf") == 4


def test_usage_adds_up_cost_and_tokens_per_model(db, client, metrics_settings):
    model = f"model-{uuid.uuid4().hex[:8]}"
    metrics.usage_observed(model=model, cost_micro_usd=1_250, input_tokens=100, output_tokens=40)
    metrics.usage_observed(model=model, cost_micro_usd=0, input_tokens=7, output_tokens=0)
    metrics.usage_observed(model=model, cost_micro_usd=-5, input_tokens=0, output_tokens=0)  # never goes down

    text = scrape(client)
    assert value(text, "beluga_usage_cost_micro_usd_total", model=model) == 1_250
    assert value(text, "beluga_usage_tokens_total", model=model, kind="input") == 107
    assert value(text, "beluga_usage_tokens_total", model=model, kind="output") == 40


def test_no_label_carries_a_key_a_user_or_a_request_id(client, metrics_settings, chat_route, api_key, fake_upstream):
    key_row, raw_key = api_key
    response = post_chat(client, raw_key, chat_body(), headers={"X-Request-Id": "client-request-0001"})
    assert response.status_code == 200
    text = scrape(client)
    for secret in (raw_key, key_row.prefix, str(key_row.user_id), "client-request-0001", response["X-Request-Id"]):
        assert f'"{secret}"' not in text
    assert chat_route.credential not in text
    label_names = {name for (_, labels) in samples(text) for name, _ in labels}
    assert label_names <= {"endpoint", "method", "status", "le", "upstream", "outcome", "model", "kind", "state"}


# --- upstream states -----------------------------------------------------------------------------------


def test_upstream_state_reports_each_upstream_one_hot(db, client, metrics_settings, monkeypatch):
    states = [
        UpstreamState(name="primary", kind="openai", state="healthy", breaker="closed"),
        UpstreamState(name="backup", kind="anthropic", state="open", breaker="open", requests=9, failures=9),
        UpstreamState(name="flaky", kind="gemini", state="degraded", breaker="closed", models_open=("m",)),
    ]
    monkeypatch.setattr("gateway.routing.health.upstream_states", lambda: states)

    text = scrape(client)
    got = {
        (dict(labels)["upstream"], dict(labels)["state"]): v
        for (name, labels), v in samples(text).items()
        if name == "beluga_upstream_state"
    }
    assert got == {
        ("primary", "healthy"): 1, ("primary", "degraded"): 0, ("primary", "open"): 0,
        ("backup", "healthy"): 0, ("backup", "degraded"): 0, ("backup", "open"): 1,
        ("flaky", "healthy"): 0, ("flaky", "degraded"): 1, ("flaky", "open"): 0,
    }  # fmt: skip


def test_upstream_state_of_the_catalog_upstreams(client, metrics_settings, chat_route):
    text = scrape(client)
    assert value(text, "beluga_upstream_state", upstream=chat_route.upstream.name, state="healthy") == 1


def test_a_scrape_survives_upstream_states_failing(db, client, metrics_settings, monkeypatch, caplog):
    def broken():
        raise RuntimeError("the shared cache is down")

    monkeypatch.setattr("gateway.routing.health.upstream_states", broken)
    metrics.attempt_observed(upstream="still-here", outcome="ok", seconds=0.1)

    with caplog.at_level(logging.ERROR, logger="beluga.gateway"):
        text = scrape(client)
    assert "beluga_upstream_state" not in text
    assert value(text, "beluga_upstream_attempts_total", upstream="still-here", outcome="ok") >= 1
    assert any("upstream states" in r.getMessage() for r in caplog.records)


# --- every worker's counts ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(
    not ON_POSTGRES_AND_REDIS,
    reason="needs PostgreSQL and Redis: the gunicorn subprocess shares them with the test (the CI runs it there)",
)
def test_every_worker_is_counted_whichever_answers_the_scrape(
    transactional_db, tmp_path, chat_route, raw_key, fake_upstream
):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left by an earlier server")
    server = start_gunicorn(tmp_path, WEB_CONCURRENCY="2", GUNICORN_THREADS="16", BELUGA_METRICS_TOKEN=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    ok = {"endpoint": "chat-completions", "method": "POST", "status": "200"}

    def call(_) -> int:
        with requests.Session() as session:  # a connection of its own: any worker may take it
            response = session.post(
                f"{server.url}/v1/chat/completions",
                json=chat_body(),
                headers={"Authorization": f"Bearer {raw_key}"},
                timeout=15,
            )
            return response.status_code

    def worker_files() -> set[int]:
        return {
            int(name.split("_")[1].removesuffix(".db"))
            for name in os.listdir(metrics_dir)
            if name.startswith("counter_")
        }

    def scraped(name: str, **labels: str) -> float:
        response = requests.get(f"{server.url}/metrics", headers=auth, timeout=10)
        assert response.status_code == 200, response.text
        return value(response.text, name, **labels)

    try:
        assert not (metrics_dir / "counter_999999.db").exists()
        assert requests.get(f"{server.url}/metrics", timeout=10).status_code == 200  # from 127.0.0.1
        calls = 0
        with ThreadPoolExecutor(max_workers=8) as pool:
            while len(worker_files() & set(children_of(server.proc.pid))) < 2 and calls < 200:
                assert set(pool.map(call, range(16))) == {200}
                calls += 16
        workers = worker_files() & set(children_of(server.proc.pid))
        assert len(workers) == 2, "both workers should have served calls"

        # Several scrapes, each on a new connection and so to either worker: the same totals.
        for _ in range(6):
            assert scraped("beluga_http_requests_total", **ok) == calls
            assert scraped("beluga_http_request_duration_seconds_count", endpoint="chat-completions") == calls

        # A worker that dies keeps its counts in the totals.
        dead = workers.pop()
        os.kill(dead, signal.SIGKILL)
        wait_for(
            lambda: dead not in children_of(server.proc.pid) and len(children_of(server.proc.pid)) == 2,
            timeout=30,
            what="gunicorn to replace the killed worker",
            log=server.log,
        )
        assert scraped("beluga_http_requests_total", **ok) == calls
    finally:
        stop_process(server.proc, grace=30)
