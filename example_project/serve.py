"""Run the example project in the foreground: the ``./dev up`` supervisor (and ``./dev key``).

Steps: apply migrations, issue an API key for team ``demo`` (kept in ``var/api-key``, mode
0600, and handed to the demo app as ``DEMO_API_KEY``), start the web server and one Celery
worker with embedded beat, wait until the HTTP port answers and the worker has reported that it
is ready, print a banner with ready-to-paste curl commands that ends with the key, then
supervise both children until Ctrl-C, SIGTERM or SIGHUP.

``serve.py key`` only issues another key, prints it and stores it (``./dev key``).

The children run in their own sessions, so a Ctrl-C in the terminal reaches only this
supervisor, which then stops each child exactly once (SIGTERM to its process group, SIGKILL
after a grace period or on a second Ctrl-C). On Linux the children also get SIGTERM if the
supervisor itself dies without cleaning up (``PR_SET_PDEATHSIG``). If either child exits on
its own, the other is stopped and the supervisor exits with an error.

The worker logs at ``WARNING`` unless ``WORKER_LOGLEVEL`` asks for more, so the banner stays
on screen while the service idles (beat sends a sweep every 5 seconds; at ``INFO`` each one is
a line).

Environment: ``PORT`` (default 8000), ``WORKER_QUEUES`` (comma-separated, default
``default``), ``WORKER_CONCURRENCY`` (default 8), ``WORKER_LOGLEVEL`` (default ``warning``),
``STOP_GRACE`` (seconds, default 10), plus everything ``example_project/settings.py`` reads
(``EXAMPLE_VAR_DIR`` moves ``var/``).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VAR_DIR = Path(os.environ.get("EXAMPLE_VAR_DIR") or HERE / "var").resolve()
KEY_FILE = VAR_DIR / "api-key"
# The worker writes this once it is ready (example_project/celery.py): at WARNING, Celery's
# own "celery@host ready." line is not logged.
READY_FILE = VAR_DIR / "worker-ready"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
HOST = "127.0.0.1"
READY_TIMEOUT = 90.0
PR_SET_PDEATHSIG = 1


class Stop(Exception):
    """Raised in the main loop when a stop signal arrives."""


def log(message: str) -> None:
    print(f"[dev] {message}", file=sys.stderr, flush=True)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"[dev] {name} must be an integer, not {raw!r}") from None


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when this process dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


def manage(*args: str, capture: bool = False) -> str:
    """Run ``manage.py`` to completion; exit with its status if it fails."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=HERE,
        stdout=subprocess.PIPE if capture else None,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        if capture and result.stdout:
            sys.stdout.write(result.stdout)
        raise SystemExit(f"[dev] manage.py {args[0]} failed with exit code {result.returncode}")
    return result.stdout or ""


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def http_answers(url: str) -> bool:
    """True once the server answers at all, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


WORKER_READY = re.compile(rb"celery@\S+ ready\.")


class Supervisor:
    """Starts the children, forwards the worker's log, and stops everything exactly once."""

    def __init__(self) -> None:
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.grace = float(env_int("STOP_GRACE", 10))
        self.selector = selectors.DefaultSelector()
        self.worker_ready = False
        self._partial = b""

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping:
            log("second stop signal: killing the children now")
            self.kill_all(signal.SIGKILL)
            return
        self.stopping = True
        raise Stop(signal.Signals(signum).name)

    def start(self, name: str, argv: list[str], *, watch_stderr: bool = False) -> None:
        """Start a child in its own session; with ``watch_stderr`` its stderr is read by
        ``pump`` (forwarded as is, and scanned for the worker's ready line)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            argv,
            cwd=HERE,
            env=env,
            stderr=subprocess.PIPE if watch_stderr else None,
            start_new_session=True,  # our Ctrl-C is ours to forward, once
            preexec_fn=die_with_parent(),  # safe: this process starts no threads
        )
        self.children[name] = proc
        if proc.stderr is not None:
            os.set_blocking(proc.stderr.fileno(), False)
            self.selector.register(proc.stderr, selectors.EVENT_READ)

    def pump(self, timeout: float) -> None:
        """Wait up to ``timeout`` for child output, forward it to our stderr."""
        if not self.selector.get_map():
            time.sleep(timeout)
            return
        for key, _events in self.selector.select(timeout):
            stream = key.fileobj
            assert isinstance(stream, io.BufferedReader)
            try:
                chunk = os.read(stream.fileno(), 65536)
            except BlockingIOError:
                continue
            if not chunk:
                self.selector.unregister(stream)
                continue
            sys.stderr.buffer.write(chunk)
            sys.stderr.flush()
            lines = (self._partial + chunk).split(b"\n")
            self._partial = lines.pop()[-4096:]
            if any(WORKER_READY.search(line) for line in lines):
                self.worker_ready = True

    def exited(self) -> tuple[str, int] | None:
        for name, proc in self.children.items():
            code = proc.poll()
            if code is not None:
                return name, code
        return None

    def kill_all(self, sig: int) -> None:
        for proc in self.children.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)

    def stop_all(self) -> None:
        """SIGTERM every child's process group, wait ``grace`` seconds, then SIGKILL."""
        self.stopping = True
        self.kill_all(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while any(p.poll() is None for p in self.children.values()):
            if time.monotonic() > deadline:
                for name, proc in self.children.items():
                    if proc.poll() is None:
                        log(f"{name} did not stop within {self.grace:.0f}s: killing it")
                self.kill_all(signal.SIGKILL)
                break
            self.pump(0.1)  # keep reading, so a chatty shutdown never blocks on a full pipe
        for proc in self.children.values():
            proc.wait()
            # Anything left in the child's process group (nothing expected) goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        self.pump(0)

    def wait_ready(self, url: str) -> None:
        """Return once the web server answers and the worker logged that it is ready."""
        deadline = time.monotonic() + READY_TIMEOUT
        web_ready = False
        while not (web_ready and self.worker_ready):
            gone = self.exited()
            if gone is not None:
                raise SystemExit(f"[dev] {gone[0]} exited with code {gone[1]} while starting")
            if time.monotonic() > deadline:
                if not web_ready:
                    raise SystemExit(f"[dev] {url} did not answer within {READY_TIMEOUT:.0f}s")
                log(
                    f"the Celery worker is not ready after {READY_TIMEOUT:.0f}s (is the broker "
                    "reachable?); tasks wait in the queue until it is"
                )
                return
            web_ready = web_ready or http_answers(url)
            self.worker_ready = self.worker_ready or READY_FILE.exists()
            self.pump(0.2)

    def watch(self) -> int:
        while True:
            gone = self.exited()
            if gone is not None:
                log(f"{gone[0]} exited with code {gone[1]}: stopping everything")
                return gone[1] or 1
            self.pump(0.5)


def shown_path(path: Path) -> str:
    """``path`` relative to the repository root when it is inside it (the banner's commands
    are meant to be pasted there), else absolute."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def issue_key() -> str:
    """Issue an API key for team ``demo``, store it in ``KEY_FILE`` (owner-only) and return it."""
    created = manage(
        "asyncqueue_create_api_key", "--team", "demo", "--name", "quickstart", capture=True
    )
    lines = created.strip().splitlines()
    if not lines:
        raise SystemExit("[dev] asyncqueue_create_api_key printed no key")
    key = lines[-1].strip()
    for line in lines[:-1]:
        log(line)
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key


def banner(base: str, key: str, log_level: str) -> str:
    key_file = shown_path(KEY_FILE)
    body = f'{{"targetUrl": "{base}/demo/api/convert-video", "payload": {{"videoId": "abc123"}}}}'
    auth = '-H "Authorization: Bearer $KEY"'
    quiet = log_level == "warning"
    return "\n".join(
        [
            "",
            "AsyncQueue example project is running.",
            f"  Start here: {base}/  (the demo: polling, signal and payment, end to end)",
            f"  API:        {base}/v1/tasks  (docs {base}/v1/docs, schema {base}/v1/schema)",
            f"  Admin:      {base}/admin/  (make a login: ./dev manage createsuperuser)",
            (
                "  Worker log: warnings only (WORKER_LOGLEVEL=info ./dev up shows every task)"
                if quiet
                else f"  Worker log: {log_level}"
            ),
            "",
            "Create a task (the worker calls the demo's own convert-video endpoint), then",
            'read it with the "id" from the answer (?wait=10 answers as soon as it changes):',
            f"  export AQ={base} KEY=$(cat {key_file})",
            f'  curl -s -X POST $AQ/v1/tasks {auth} -H "Content-Type: application/json" '
            f"-d '{body}'",
            f'  curl -s "$AQ/v1/tasks/<id>?wait=10" {auth}',
            "",
            f'API key for team "demo" (also in {key_file}; ./dev key issues another):',
            f"  {key}",
            "",
            "Press Ctrl-C to stop.",
            "",
        ]
    )


def key_command() -> int:
    """``./dev key``: a new key for team ``demo``, printed alone on the last line."""
    manage("migrate", "--noinput", capture=True)
    key = issue_key()
    log(f'new API key for team "demo", stored in {shown_path(KEY_FILE)}')
    print(key, flush=True)
    return 0


def main() -> int:
    port = env_int("PORT", 8000)
    queues = os.environ.get("WORKER_QUEUES") or "default"
    log_level = (os.environ.get("WORKER_LOGLEVEL") or "warning").lower()
    if log_level not in LOG_LEVELS:
        raise SystemExit(f"[dev] WORKER_LOGLEVEL must be one of {', '.join(LOG_LEVELS)}")
    concurrency = env_int("WORKER_CONCURRENCY", 8)
    base = f"http://{HOST}:{port}"
    if port_in_use(port):
        raise SystemExit(f"[dev] port {port} on {HOST} is already in use; set PORT=<free port>")

    log("applying migrations")
    manage("migrate", "--noinput", capture=True)  # shown only if it fails
    log('issuing an API key for team "demo"')
    key = issue_key()

    # The demo client (/demo/) creates its tasks with this key, unless one is set already.
    os.environ.setdefault("DEMO_API_KEY", key)
    # The app's own loggers follow the worker's level (the example settings read this).
    os.environ.setdefault("ASYNCQUEUE_LOG_LEVEL", log_level.upper())

    supervisor = Supervisor()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, supervisor.on_signal)
    code = 0
    try:
        log(f"starting the web server on {base}")
        supervisor.start(
            "web server",
            [sys.executable, "manage.py", "runserver", f"{HOST}:{port}", "--noreload"],
        )
        log(f"starting one Celery worker (queues: {queues}) with embedded beat")
        READY_FILE.unlink(missing_ok=True)
        os.environ["DEV_WORKER_READY_FILE"] = str(READY_FILE)
        supervisor.start(
            "celery worker",
            [
                sys.executable, "-m", "celery", "-A", "example_project",
                "worker", "-B", "-Q", queues, "-l", log_level,
                "--pool", "threads", "--concurrency", str(concurrency),
                "-s", str(VAR_DIR / "celerybeat-schedule"),
            ],
            watch_stderr=True,
        )  # fmt: skip
        supervisor.wait_ready(f"{base}/admin/login/")
        print(banner(base, key, log_level), flush=True)
        code = supervisor.watch()
    except Stop as stop:
        log(f"{stop.args[0]} received: stopping")
    finally:
        # Signals during shutdown only escalate to SIGKILL (see on_signal), never interrupt it.
        supervisor.stopping = True
        supervisor.stop_all()
        log("stopped")
    return code


if __name__ == "__main__":
    if sys.argv[1:] == ["key"]:
        sys.exit(key_command())
    sys.exit(main())
