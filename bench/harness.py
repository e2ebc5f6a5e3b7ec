"""What every benchmark shares: backends, the database, a local target, workers, the API
server, statistics, tables, JSON and charts.

A benchmark runs in a child process per backend (Django is configured once per process, and
each backend has its own database and broker); the parent merges the children's results,
prints the table and draws the chart. Everything listens on 127.0.0.1 only, and every process
started here is stopped by its pid when the benchmark ends.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
QUEUE = os.environ.get("BENCH_QUEUE") or "aqbench"  # see bench/settings.py
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/asyncqueue_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
BACKEND_LABELS = {
    "pg": "PostgreSQL + Redis",
    "embedded": "SQLite + embedded broker",
}


# --------------------------------------------------------------------------------------------
# Backends and the database
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    name: str
    database_url: str
    broker_url: str
    state_dir: Path

    @property
    def label(self) -> str:
        return BACKEND_LABELS.get(self.name, self.name)

    def env(self) -> dict[str, str]:
        return {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.broker_url,
            "BENCH_STATE_DIR": str(self.state_dir),
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }


def backend_for(name: str, args: Any) -> Backend:
    state = Path(args.state_dir or Path(tempfile.gettempdir()) / "aqbench") / name
    state.mkdir(parents=True, exist_ok=True)
    if name == "pg":
        return Backend(name, args.pg_url, args.broker_url, state)
    if name == "embedded":
        return Backend(
            name,
            f"sqlite:///{state / 'bench.sqlite3'}",
            f"sqlite:///{state / 'broker.sqlite3'}",
            state,
        )
    raise SystemExit(f"unknown backend {name!r} (pg, embedded)")


def recreate_database(backend: Backend) -> None:
    """A fresh, empty database for a run (PostgreSQL: DROP/CREATE; SQLite: remove the files)."""
    if backend.database_url.startswith("sqlite:"):
        for path in backend.state_dir.glob("*.sqlite3*"):
            path.unlink()
        return
    import psycopg

    parts = urlsplit(backend.database_url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    import bench.celery_app  # noqa: F401  (current app: the API and services publish through it)


def prepare_database() -> None:
    """Apply migrations (and create the floor table), then empty every benchmark table."""
    from django.core.management import call_command

    # Migrations first: the floor table (no migrations) has a foreign key to the app's team.
    call_command("migrate", verbosity=0, interactive=False)
    call_command("migrate", run_syncdb=True, verbosity=0, interactive=False)
    reset_tables()


def reset_tables() -> None:
    from django.apps import apps
    from django.db import connection

    models = [m for m in apps.get_models() if m._meta.app_label in ("asyncqueue", "aqbench_floor")]
    tables = [m._meta.db_table for m in models]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
        else:
            cursor.execute("PRAGMA foreign_keys = OFF")  # SQLite has no TRUNCATE … CASCADE
            for table in tables:
                cursor.execute(f'DELETE FROM "{table}"')
            cursor.execute("PRAGMA foreign_keys = ON")


def purge_queue() -> None:
    """Drop messages left on the benchmark queue (a run that was interrupted, a floor run)."""
    from bench.celery_app import app

    with app.connection_for_write() as conn, contextlib.suppress(Exception):
        conn.default_channel.queue_purge(QUEUE)


def queue_size() -> int:
    """Messages waiting on the benchmark queue (all priorities; not those a worker holds)."""
    from bench.celery_app import app

    with app.connection_for_read() as conn:
        # kombu's virtual transports (Redis, the embedded broker) count every priority list;
        # a passive queue_declare would fail before a binding exists.
        return int(conn.default_channel._size(QUEUE))


def bench_team() -> tuple[Any, str]:
    """The benchmark team and a fresh raw API key."""
    from asyncqueue_django import services

    team, _ = services.get_or_create_team("bench")
    return team, services.create_api_key(team, "bench").raw_key


def is_postgres() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"


# --------------------------------------------------------------------------------------------
# The local target: a fast threaded HTTP/1.1 server recording arrival times
# --------------------------------------------------------------------------------------------

_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
    b'Connection: keep-alive\r\n\r\n{"ok":true}'
)


@dataclass
class Arrival:
    at: float  # time.time() when the request head was read
    path: str
    task_id: str


class TargetServer:
    """Callback and webhook target on 127.0.0.1: one thread per connection, keep-alive, a
    fixed 200 JSON answer, and the arrival time of every request (keyed by the
    ``X-AsyncQueue-Task-Id`` header and by path). Much cheaper per request than
    ``http.server``, so it is never what a throughput benchmark measures."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.arrivals: list[Arrival] = []
        self.by_key: dict[str, float] = {}
        self.by_path: dict[str, list[float]] = {}
        self.cond = threading.Condition()
        self.waiters = 0
        self.closed = False
        self.conns: list[socket.socket] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> TargetServer:
        threading.Thread(target=self._accept, daemon=True, name="target-accept").start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.closed = True
        self.sock.close()
        for conn in list(self.conns):
            with contextlib.suppress(OSError):
                conn.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                at = time.time()
                head, _, rest = buf.partition(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                parts = lines[0].split(b" ")
                path = parts[1].decode("latin-1") if len(parts) > 1 else ""
                length, task_id, close = 0, "", False
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    lname = name.strip().lower()
                    if lname == b"content-length":
                        length = int(value.strip())
                    elif lname == b"x-asyncqueue-task-id":
                        task_id = value.strip().decode()
                    elif lname == b"connection" and value.strip().lower() == b"close":
                        close = True
                while len(rest) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    rest += data
                buf = rest[length:]
                self._record(Arrival(at, path, task_id))
                conn.sendall(_RESPONSE)
                if close:
                    return
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            with contextlib.suppress(ValueError):
                self.conns.remove(conn)

    def _record(self, arrival: Arrival) -> None:
        self.arrivals.append(arrival)
        with self.cond:
            if arrival.task_id:
                self.by_key.setdefault(arrival.task_id, arrival.at)
            self.by_key.setdefault(arrival.path, arrival.at)
            self.by_path.setdefault(arrival.path, []).append(arrival.at)
            if self.waiters:
                self.cond.notify_all()

    def wait(self, key: str, timeout: float = 30) -> float:
        """Arrival time of the first request for ``key`` (a task id or a path)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            self.waiters += 1
            try:
                while key not in self.by_key:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"nothing arrived for {key} within {timeout}s")
                    self.cond.wait(left)
                return self.by_key[key]
            finally:
                self.waiters -= 1

    def wait_path(self, path: str, count: int, timeout: float) -> list[float]:
        """Arrival times of the first ``count`` requests to exactly ``path``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            self.waiters += 1
            try:
                while len(self.by_path.get(path, ())) < count:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        got = len(self.by_path.get(path, ()))
                        raise TimeoutError(f"{got}/{count} requests to {path} within {timeout}s")
                    self.cond.wait(min(left, 1.0))
                return list(self.by_path[path][:count])
            finally:
                self.waiters -= 1

    def wait_count(self, prefix: str, count: int, timeout: float) -> list[Arrival]:
        """Wait until ``count`` requests whose path starts with ``prefix`` have arrived."""
        deadline = time.monotonic() + timeout
        while True:
            got = [a for a in self.arrivals if a.path.startswith(prefix)]
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(got)}/{count} requests to {prefix} within {timeout}s")
            time.sleep(0.02)


class UdpCollector:
    """Receives ``"<key> <time>"`` datagrams from ``bench.ping`` (the dispatch floor)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: dict[str, float] = {}
        self.all: dict[str, list[float]] = {}
        self.cond = threading.Condition()

    def __enter__(self) -> UdpCollector:
        threading.Thread(target=self._loop, daemon=True, name="udp").start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.sock.close()

    def _loop(self) -> None:
        while True:
            try:
                data, _ = self.sock.recvfrom(256)
            except OSError:
                return
            key, _, at = data.decode().partition(" ")
            with self.cond:
                self.seen[key] = float(at)
                self.all.setdefault(key, []).append(float(at))
                self.cond.notify_all()

    def wait(self, key: str, timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        with self.cond:
            while key not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"ping {key} did not run within {timeout}s")
                self.cond.wait(left)
            return self.seen[key]

    def wait_many(self, key: str, count: int, timeout: float) -> list[float]:
        """Times of the first ``count`` pings sent with ``key``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.all.get(key, ())) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = len(self.all.get(key, ()))
                    raise TimeoutError(f"{got}/{count} pings {key} within {timeout}s")
                self.cond.wait(min(left, 1.0))
            return list(self.all[key][:count])


# --------------------------------------------------------------------------------------------
# Counting PostgreSQL round trips
# --------------------------------------------------------------------------------------------


class RoundTrips:
    """A TCP proxy in front of PostgreSQL that counts round trips: every ``ReadyForQuery``
    message the server sends ends one (a simple query, or an extended-protocol ``Sync``:
    BEGIN, COMMIT, ``SELECT 1`` connection checks included). The first one of a connection
    ends its start-up and is counted in ``connections`` instead. Only for counting passes:
    the proxy adds latency, so nothing timed goes through it. Point a process at it with
    :meth:`url` (TLS and GSS encryption off, so the protocol can be read)."""

    def __init__(self, database_url: str) -> None:
        parts = urlsplit(database_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.database_url = database_url
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.round_trips = 0
        self.connections = 0
        self.closed = False

    def url(self) -> str:
        parts = urlsplit(self.database_url)
        netloc = parts.netloc.rpartition("@")
        auth = netloc[0] + "@" if netloc[1] else ""
        query = "&".join(q for q in (parts.query, "sslmode=disable&gssencmode=disable") if q)
        return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{self.port}", query=query))

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return self.round_trips, self.connections

    def __enter__(self) -> RoundTrips:
        threading.Thread(target=self._accept, daemon=True, name="pg-count").start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.closed = True
        self.sock.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()
            threading.Thread(target=self._count, args=(server, client), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _count(self, src: socket.socket, dst: socket.socket) -> None:
        buf = b""
        started = False
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                buf += data
                ready, pos = 0, 0
                while len(buf) - pos >= 5:  # type byte, then a length that counts itself
                    end = pos + 1 + int.from_bytes(buf[pos + 1 : pos + 5], "big")
                    if len(buf) < end:
                        break
                    if buf[pos] == ord("Z"):
                        ready += 1
                    pos = end
                buf = buf[pos:]
                if ready:
                    with self.lock:
                        if not started:
                            started, ready = True, ready - 1
                            self.connections += 1
                        self.round_trips += ready
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def default_connection_through(counter: RoundTrips) -> Iterator[None]:
    """This process's default Django connection goes through ``counter`` for the block."""
    from django.db import connection

    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(
        HOST="127.0.0.1",
        PORT=counter.port,
        OPTIONS={**saved.get("OPTIONS", {}), "sslmode": "disable", "gssencmode": "disable"},
    )
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


# --------------------------------------------------------------------------------------------
# Processes: a Celery worker and the API on gunicorn
# --------------------------------------------------------------------------------------------


def _stop_process(
    proc: subprocess.Popen[bytes] | None, grace: float = 20, sig: int = signal.SIGTERM
) -> None:
    """``sig``, then SIGKILL after ``grace``; children (prefork pool) by their own pids."""
    if proc is None or proc.poll() is not None:
        return
    try:
        import psutil

        children = psutil.Process(proc.pid).children(recursive=True)
    except Exception:
        children = []
    proc.send_signal(sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for child in children:
        with contextlib.suppress(Exception):
            if child.is_running():
                child.kill()


class Worker:
    """``celery -A bench.celery_app worker`` on the benchmark queue (no beat, no gossip)."""

    def __init__(
        self,
        log_dir: Path,
        *,
        pool: str = "threads",
        concurrency: int = 8,
        name: str = "w",
        env: dict[str, str] | None = None,
    ) -> None:
        self.pool, self.concurrency = pool, concurrency
        self.env = env or {}
        tag = uuid.uuid4().hex[:8]
        self.log_path = log_dir / f"worker-{name}-{pool}-{tag}.log"
        self.ready_path = log_dir / f"worker-{tag}.ready"
        self.name = f"bench-{tag}@%h"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> Worker:
        cmd = [
            sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker",
            "-Q", QUEUE, "--pool", self.pool, "--concurrency", str(self.concurrency),
            "--without-mingle", "--without-gossip", "--without-heartbeat",
            "--loglevel", "WARNING", "-n", self.name,
        ]  # fmt: skip
        env = {**os.environ, **self.env, "BENCH_READY_FILE": str(self.ready_path)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 90
        while not self.ready_path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                _stop_process(self.proc)
                raise RuntimeError(f"worker did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        # A short grace: nothing a benchmark leaves on its queue is worth waiting for (it is
        # purged), and a warm shutdown takes seconds on the embedded broker.
        _stop_process(self.proc, grace=1.5)
        self.proc = None

    def rss(self) -> tuple[int, int]:
        """(main process RSS, RSS of the process and all its children), bytes."""
        import psutil

        main = psutil.Process(self.pid)
        own = main.memory_info().rss
        total = own
        for child in main.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return own, total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiServer:
    """The app (``bench.wsgi``) on gunicorn: ``sync`` workers, or ``gthread`` with threads."""

    def __init__(
        self,
        log_dir: Path,
        *,
        workers: int = 4,
        threads: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workers, self.threads = workers, threads
        self.env = {**os.environ, **(env or {})}
        self.port = free_port()
        self.log_path = log_dir / f"gunicorn-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> ApiServer:
        cmd = [
            sys.executable, "-m", "gunicorn", "bench.wsgi:application",
            "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
            "--log-level", "warning", "--error-logfile", "-", "--graceful-timeout", "5",
            "--timeout", "120", "--backlog", "2048",
        ]  # fmt: skip
        if self.threads > 1:
            cmd += ["--worker-class", "gthread", "--threads", str(self.threads)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while True:
            try:
                status, _ = request("GET", self.url("/v1/tasks"), timeout=2)
                if status == 401:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                _stop_process(self.proc)
                raise RuntimeError(f"gunicorn did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        # Every worker process has imported the app once it has answered a few requests.
        for _ in range(self.workers * 4):
            request("GET", self.url("/v1/tasks"), timeout=5)
        return self

    def __exit__(self, *exc: Any) -> None:
        _stop_process(self.proc, grace=10)
        self.proc = None


# --------------------------------------------------------------------------------------------
# HTTP clients
# --------------------------------------------------------------------------------------------


def request(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, Any]:
    """One request on a new connection; (status, parsed JSON or None)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=data, headers=hdrs)
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, None
    finally:
        conn.close()


@dataclass
class LoadResult:
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def load(
    url: str,
    bodies: Callable[[int], bytes],
    headers: dict[str, str],
    *,
    clients: int,
    seconds: float,
    max_requests: int | None = None,
) -> LoadResult:
    """Closed-loop load: ``clients`` threads POST as fast as answers come back, for
    ``seconds`` (or until ``max_requests``). Keeps connections alive when the server does."""
    parts = urlsplit(url)
    result = LoadResult()
    lock = threading.Lock()
    counter = iter(range(10**12))
    stop_at = time.monotonic() + seconds
    hdrs = {"Content-Type": "application/json", **headers}

    def client() -> None:
        conn: http.client.HTTPConnection | None = None
        local_ok, local_err, lat = 0, 0, []
        statuses: dict[int, int] = {}
        while time.monotonic() < stop_at:
            with lock:
                i = next(counter)
            if max_requests is not None and i >= max_requests:
                break
            if conn is None:
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            started = time.perf_counter()
            try:
                conn.request("POST", parts.path, body=bodies(i), headers=hdrs)
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                local_err += 1
                if conn is not None:
                    conn.close()
                conn = None
                continue
            lat.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
            if 200 <= status < 300:
                local_ok += 1
            else:
                local_err += 1
        if conn is not None:
            conn.close()
        with lock:
            result.ok += local_ok
            result.errors += local_err
            result.latencies.extend(lat)
            for k, v in statuses.items():
                result.statuses[k] = result.statuses.get(k, 0) + v

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.seconds = time.monotonic() - started
    return result


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation."""
    if not values:
        return float("nan")
    data = sorted(values)
    k = (len(data) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def median(values: Iterable[float]) -> float:
    data = [v for v in values if v == v]  # drop NaN
    return statistics.median(data) if data else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def percentiles_ms(values: Sequence[float]) -> dict[str, float]:
    return {f"p{q}": round(pct(values, q) * 1000, 3) for q in (50, 95, 99)}


# --------------------------------------------------------------------------------------------
# Output: tables, JSON, charts
# --------------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if 0 < abs(value) < 1:
            return f"{value:.3g}"
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def meta() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except Exception:
            return ""

    load1, load5, _ = os.getloadavg()
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "app_tree_dirty": bool(git("status", "--porcelain", "--", "asyncqueue_django")),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(load1, 2), round(load5, 2)],
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def figure(path: Path, ncols: int, title: str, width: float = 5.5) -> Iterator[Any]:
    """A matplotlib figure (Agg) with ``ncols`` axes, saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(ncols, 1), figsize=(width * max(ncols, 1), 4.2), squeeze=False)
    fig.suptitle(title, fontsize=11)
    try:
        yield fig, list(axes[0])
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def log_x(ax: Any, label: str) -> None:
    """A log x axis with plain numbers on the major ticks only."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(label)


def grouped_bars(
    ax: Any,
    groups: Sequence[str],
    series: dict[str, Sequence[float]],
    *,
    ylabel: str,
    title: str,
    annotate: Sequence[str] | None = None,
) -> None:
    """Bars per group (x) and series (colour); ``annotate`` writes a label above each group."""
    n = max(len(series), 1)
    width = 0.8 / n
    xs = list(range(len(groups)))
    tops = [0.0] * len(groups)
    for i, (name, values) in enumerate(series.items()):
        pos = [x - 0.4 + width * (i + 0.5) for x in xs]
        vals = [v if v == v else 0 for v in values]
        ax.bar(pos, vals, width, label=name)
        tops = [max(t, v) for t, v in zip(tops, vals, strict=True)]
    ax.set_xticks(xs)
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    if annotate:
        for x, text, top in zip(xs, annotate, tops, strict=True):
            ax.annotate(text, (x, top), ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, max(tops or [1]) * 1.18 or 1)


# --------------------------------------------------------------------------------------------
# What a benchmark gets
# --------------------------------------------------------------------------------------------


@dataclass
class Context:
    args: Any
    backend: Backend
    log_dir: Path

    @property
    def smoke(self) -> bool:
        return bool(self.args.smoke)

    def rounds(self, default: int) -> int:
        if self.args.rounds:
            return int(self.args.rounds)
        return 1 if self.smoke else default

    def say(self, message: str) -> None:
        print(f"  [{self.backend.name}] {message}", flush=True)
