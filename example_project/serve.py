"""Run the example project in the foreground: the ``./dev up`` supervisor.

Steps: apply migrations, issue an API key for team ``demo``, start the web server and one
Celery worker with embedded beat, wait until the HTTP port answers, print the key and
ready-to-paste curl commands, then supervise both children until Ctrl-C, SIGTERM or SIGHUP.

The children run in their own sessions, so a Ctrl-C in the terminal reaches only this
supervisor, which then stops each child exactly once (SIGTERM to its process group, SIGKILL
after a grace period or on a second Ctrl-C). On Linux the children also get SIGTERM if the
supervisor itself dies without cleaning up (``PR_SET_PDEATHSIG``). If either child exits on
its own, the other is stopped and the supervisor exits with an error.

Environment: ``PORT`` (default 8000), ``WORKER_QUEUES`` (comma-separated, default
``default``), ``WORKER_CONCURRENCY`` (default 8), ``STOP_GRACE`` (seconds, default 10), plus
everything ``example_project/settings.py`` reads.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
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
    """True once the server answers at all (the API answers 401 without a key)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


class Supervisor:
    def __init__(self) -> None:
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.grace = float(env_int("STOP_GRACE", 10))

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping:
            log("second stop signal: killing the children now")
            self.kill_all(signal.SIGKILL)
            return
        self.stopping = True
        raise Stop(signal.Signals(signum).name)

    def start(self, name: str, argv: list[str]) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.children[name] = subprocess.Popen(
            argv,
            cwd=HERE,
            env=env,
            start_new_session=True,  # our Ctrl-C is ours to forward, once
            preexec_fn=die_with_parent(),  # safe: no threads yet
        )

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
        self.stopping = True
        self.kill_all(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for name, proc in self.children.items():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop within {self.grace:.0f}s: killing it")
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Anything left in the children's process groups (none expected) goes too.
        for proc in self.children.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def wait_ready(self, url: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not http_answers(url):
            gone = self.exited()
            if gone is not None:
                raise SystemExit(f"[dev] {gone[0]} exited with code {gone[1]} while starting")
            if time.monotonic() > deadline:
                raise SystemExit(f"[dev] {url} did not answer within {READY_TIMEOUT:.0f}s")
            time.sleep(0.2)

    def watch(self) -> int:
        while True:
            gone = self.exited()
            if gone is not None:
                log(f"{gone[0]} exited with code {gone[1]}: stopping everything")
                return gone[1] or 1
            time.sleep(0.2)


def banner(base: str, key: str) -> str:
    auth = f'-H "Authorization: Bearer {key}"'
    body = '{"targetUrl": "https://httpbin.org/post", "payload": {"hello": "world"}}'
    return "\n".join(
        [
            "",
            "AsyncQueue example project is running.",
            f"  API:      {base}/v1/tasks",
            f"  Admin:    {base}/admin/  (make a login: ./dev manage createsuperuser)",
            f'  API key:  {key}   (team "demo"; shown once, only its digest is stored)',
            "",
            "Create a task:",
            f'  curl -X POST {base}/v1/tasks {auth} -H "Content-Type: application/json" '
            f"-d '{body}'",
            "",
            'Then look at it (use the "id" from the answer; ?wait=10 long-polls):',
            f"  curl {base}/v1/tasks/<id> {auth}",
            "",
            "List your tasks:",
            f"  curl {base}/v1/tasks {auth}",
            "",
            "Press Ctrl-C to stop.",
            "",
        ]
    )


def main() -> int:
    port = env_int("PORT", 8000)
    queues = os.environ.get("WORKER_QUEUES") or "default"
    concurrency = env_int("WORKER_CONCURRENCY", 8)
    base = f"http://{HOST}:{port}"
    if port_in_use(port):
        raise SystemExit(f"[dev] port {port} on {HOST} is already in use; set PORT=<free port>")

    log("applying migrations")
    manage("migrate", "--noinput")
    log('issuing an API key for team "demo"')
    created = manage(
        "asyncqueue_create_api_key", "--team", "demo", "--name", "quickstart", capture=True
    )
    lines = created.strip().splitlines()
    if not lines:
        raise SystemExit("[dev] asyncqueue_create_api_key printed no key")
    key = lines[-1].strip()
    for line in lines[:-1]:
        log(line)

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
        supervisor.start(
            "celery worker",
            [
                sys.executable, "-m", "celery", "-A", "example_project",
                "worker", "-B", "-Q", queues, "-l", "info",
                "--pool", "threads", "--concurrency", str(concurrency),
                "-s", str(HERE / "var" / "celerybeat-schedule"),
            ],
        )  # fmt: skip
        supervisor.wait_ready(f"{base}/v1/tasks")
        print(banner(base, key), flush=True)
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
    sys.exit(main())
