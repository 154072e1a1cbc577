"""gunicorn's configuration: `gunicorn gateway.wsgi -c gunicorn.conf.py`.

Worker class: gthread. The proxy is synchronous Django calling upstreams with
`requests`, which blocks; under threads it works as written, and each open
stream simply holds one thread while it relays chunks (300 threads x 2 workers
hold 500+ slow streams, see bench/). gevent would need monkey-patching of
psycopg and requests (psycopg 3 is not patched by gevent at all) and makes
every blocking call a hidden scheduling point. The sync worker holds one
stream per process, which the shared benchmark showed cannot work.

This file is gunicorn's, not Django's, so it reads its own environment
variables (all listed in .env.example):

    WEB_CONCURRENCY   worker processes (default: twice the CPUs this process may run on)
    GUNICORN_THREADS  threads per worker = concurrent requests/streams per worker (default 300)
    BIND              address to listen on (default 127.0.0.1:8000)
    PORT              when BIND is unset: listen on 0.0.0.0:$PORT (gunicorn's and PaaS convention)
    ACCESS_LOG        1 to write an access log to stdout (default off: usage records are the log)
    GUNICORN_LOG_LEVEL  gunicorn's own log level (default info)
    PROMETHEUS_MULTIPROC_DIR  where the workers write their metrics for /metrics; its *.db files are
                      wiped at start (default: $BELUGA_DATA_DIR/metrics, BELUGA_DATA_DIR's default
                      being ./var as in Django's settings; see docs/metrics.md)

One more is read by gunicorn itself, not by this file:

    FORWARDED_ALLOW_IPS  comma-separated addresses (or *) whose scheme headers (X-Forwarded-Proto,
                      X-Forwarded-Protocol, X-Forwarded-SSL) set the request's scheme, http or https
                      (default 127.0.0.1,::1)
"""

import glob
import os
from pathlib import Path

# Not gateway.settings' helpers: importing Django settings here would configure
# Django in the master process before fork.


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def _env_bool(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


# /metrics must count every worker, whichever answers the scrape: prometheus_client's multiprocess mode,
# which each worker picks when it first imports prometheus_client, from this variable (inherited at fork).
# Beluga's own data directory by default: one per deployment, so two servers on a machine never mix.
_data_dir = Path(os.environ.get("BELUGA_DATA_DIR") or Path(__file__).resolve().parent / "var")
_metrics_dir = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(_data_dir / "metrics"))
os.makedirs(_metrics_dir, exist_ok=True)


def on_starting(server):
    # Counts start from zero with each server; only the metric files go (the directory may be shared).
    for path in glob.glob(os.path.join(_metrics_dir, "*.db")):
        os.remove(path)


def child_exit(server, worker):
    # A dead worker's counters stay in the totals; only its live gauges are dropped.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _metrics_dir)


wsgi_app = "gateway.wsgi:application"
proc_name = "beluga"

worker_class = "gateway.workers.BalancedThreadWorker"  # gthread, fairer accepts
# Two processes per core: a process's threads share one GIL, and at one process
# per core a burst of streams queues on GIL hand-offs (each Redis, database and
# upstream wait gives the GIL up and waits to get it back). On 2 cores, 4
# processes added about half the time-to-first-token of 2 at 64 streams, in
# three side-by-side runs (docs/performance.md).
workers = _env_int("WEB_CONCURRENCY", 2 * len(os.sched_getaffinity(0)))  # the CPUs this process may use
threads = _env_int("GUNICORN_THREADS", 300)
# gthread parks idle keep-alive connections in a poller, not in a thread; this
# caps open connections per worker (held streams + idle keep-alive).
worker_connections = max(1000, threads * 2)

if os.environ.get("BIND"):
    bind = [os.environ["BIND"]]
elif os.environ.get("PORT"):
    bind = [f"0.0.0.0:{_env_int('PORT', 8000)}"]  # noqa: S104 (a PaaS routes to $PORT on every interface)
else:
    bind = ["127.0.0.1:8000"]

# gthread workers heartbeat from their main thread, so a stream that lasts
# minutes does not trip `timeout`; it only catches a worker that is truly stuck.
timeout = 120
graceful_timeout = 30
# Longer than the usual load balancer idle timeout (60 s), so the balancer
# closes idle connections first and never sends on a socket we just closed.
keepalive = 75
# No periodic worker recycling: it would cut held streams.
max_requests = 0

accesslog = "-" if _env_bool("ACCESS_LOG") else None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# The heartbeat file is touched often; keep it in memory where /dev/shm exists (Docker's /tmp may be disk).
# gunicorn creates it with mkstemp and unlinks it at once, so a shared directory is safe.
if os.path.isdir("/dev/shm"):  # noqa: S108
    worker_tmp_dir = "/dev/shm"  # noqa: S108
