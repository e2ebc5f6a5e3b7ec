"""Every curl block of the README, run as written against a live ``./dev up`` stack.

The stack is ``example_project/serve.py`` itself (what ``./dev up`` execs) on a free port, on its
embedded defaults (SQLite + the SQLite broker) in a temporary ``var/`` directory: the web server,
a Celery worker with embedded beat, the demo app. Each README command runs in bash with ``AQ``
and ``KEY`` set as the quick start sets them; ``<id>``, ``<signalToken>``, ``<tokenId>`` (a
Token Vault id) and ``<scheduleId>`` are replaced by the values from the answers before them,
as a reader would. Each ``# → CODE {...}`` line after a command is checked: the HTTP status,
and every ``"name": value`` pair it shows (strings without an ellipsis, numbers, booleans) must
occur in the answer. A lookup (a command without ``-X``) is repeated until its answer matches,
as the README says ("until it is waiting").
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
START_TIMEOUT = 150.0
LOOKUP_TIMEOUT = 60.0

pytestmark = pytest.mark.worker

# runserver's access log, one line per request (the only output expected while idle).
ACCESS_LOG = re.compile(r'^\[\d{2}/\w{3}/\d{4} [\d:]+\] "')


# --------------------------------------------------------------------------------------------
# The README's curl blocks, as steps
# --------------------------------------------------------------------------------------------


@dataclass
class Step:
    command: str
    expect: list[str] = field(default_factory=list)


@dataclass
class Block:
    heading: str
    line: int
    steps: list[Step]


def _blocks() -> list[Block]:
    blocks: list[Block] = []
    heading = ""
    lines = README.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("# ").strip()
        if line.strip() == "```sh":
            start = i + 1
            i += 1
            body: list[str] = []
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            if any(re.match(r"\s*curl ", b) for b in body):
                blocks.append(Block(heading, start, _steps(body)))
        i += 1
    return blocks


def _steps(body: list[str]) -> list[Step]:
    steps: list[Step] = []
    i = 0
    while i < len(body):
        line = body[i]
        stripped = line.strip()
        if stripped.startswith("# →"):
            assert steps, f"an expectation with no command before it: {line}"
            steps[-1].expect.append(stripped.removeprefix("# →").strip())
        elif stripped and not stripped.startswith("#"):
            command = [line]
            heredoc = re.search(r"<<(\w+)\s*$", line.split(" #", 1)[0])
            while command[-1].rstrip().endswith("\\") and not heredoc:
                i += 1
                command.append(body[i])
            if heredoc:
                while body[i].strip() != heredoc[1]:
                    i += 1
                    command.append(body[i])
            steps.append(Step("\n".join(command)))
        i += 1
    return steps


BLOCKS = _blocks()


def test_the_readme_has_curl_blocks_for_the_quick_start_the_patterns_and_the_demo() -> None:
    headings = [b.heading for b in BLOCKS]
    assert headings[0] == "Quick start"
    assert headings.count("The three patterns") == 3
    assert "The demo: the three patterns end to end" in headings
    # Targets exist wherever the README runs: no public host, no placeholder host outside
    # the "# your app:" comments, no fixed port outside the lines that set AQ.
    for block in BLOCKS:
        for step in block.steps:
            assert "your-app.example" not in step.command, step.command
            assert "httpbin" not in step.command, step.command
            if not step.command.startswith("export "):
                assert "127.0.0.1" not in step.command, step.command
            assert step.expect or step.command.startswith("export "), (
                f"README line {block.line}: every command says how it ends: {step.command}"
            )


# --------------------------------------------------------------------------------------------
# The live stack
# --------------------------------------------------------------------------------------------


class Stack:
    """``example_project/serve.py`` in a subprocess; its output is collected line by line."""

    def __init__(self, var_dir: Path) -> None:
        self.var_dir = var_dir
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
            and not k.startswith("DEMO_")
        }
        env.update(PORT=str(self.port), EXAMPLE_VAR_DIR=str(var_dir), WORKER_CONCURRENCY="4")
        env.pop("WORKER_LOGLEVEL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "example_project/serve.py"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.readers = [
            threading.Thread(target=self._collect, args=(stream, sink), daemon=True)
            for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _collect(stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while "Press Ctrl-C to stop." not in self.stdout:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("./dev up did not start:\n" + "\n".join(self.stderr[-60:]))
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for reader in self.readers:
            reader.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    @property
    def key(self) -> str:
        return (self.var_dir / "api-key").read_text().strip()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("dev-up-var"))
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def test_the_banner_ends_with_the_stored_key_and_the_stack_stays_quiet(stack: Stack) -> None:
    banner = [line for line in stack.stdout if line.strip()]
    assert banner[-1] == "Press Ctrl-C to stop."
    assert banner[-2].strip() == stack.key
    assert stack.key.startswith("aq_")
    assert oct((stack.var_dir / "api-key").stat().st_mode & 0o777) == "0o600"
    assert not [line for line in banner if "httpbin" in line or "your-app.example" in line]
    assert "Worker log: warnings only" in "\n".join(banner)
    # Idle for two sweep intervals and more: nothing but (possibly) request lines.
    seen = len(stack.stderr)
    time.sleep(12)
    noise = [line for line in stack.stderr[seen:] if not ACCESS_LOG.match(line)]
    assert noise == [], noise


def test_the_root_leads_to_the_demo_which_links_the_admin_docs_and_schema(stack: Stack) -> None:
    import requests

    page = requests.get(stack.base + "/", timeout=30)
    assert page.status_code == 200
    assert page.url == stack.base + "/demo/"
    for link in ('href="/admin/"', 'href="/v1/docs"', 'href="/v1/schema"'):
        assert link in page.text


# --------------------------------------------------------------------------------------------
# Running the blocks
# --------------------------------------------------------------------------------------------

CURL = 'curl() { command curl --show-error --max-time 60 -w "\\n%{http_code}" "$@"; }\n'
PAIR = re.compile(r'"(\w+)": ("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|true|false|null)')


def _contains(answer: Any, name: str, value: Any) -> bool:
    if isinstance(answer, dict):
        if name in answer and answer[name] == value:
            return True
        return any(_contains(v, name, value) for v in answer.values())
    if isinstance(answer, list):
        return any(_contains(v, name, value) for v in answer)
    return False


def _mismatch(expect: str, code: int, answer: Any) -> str | None:
    """Why the answer does not end as the README line says, or None when it does."""
    wanted = re.match(r"(\d{3})\b", expect)
    assert wanted, f"an expectation must start with the status code: {expect}"
    if code != int(wanted[1]):
        return f"HTTP {code}, the README says {wanted[1]}"
    for name, raw in PAIR.findall(expect):
        value = json.loads(raw)
        if isinstance(value, str) and "…" in value:
            continue  # an example value, not a promise
        if not _contains(answer, name, value):
            return f'no "{name}": {raw} in the answer'
    return None


def _run(command: str, env: dict[str, str]) -> tuple[int, Any, str]:
    done = subprocess.run(
        ["bash", "-c", CURL + command],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, f"{command}\n{done.stderr}"
    body, _, code = done.stdout.rpartition("\n")
    try:
        answer = json.loads(body)
    except ValueError:
        answer = body
    return int(code), answer, body


@pytest.mark.parametrize(
    "block", BLOCKS, ids=[f"line{b.line}-{b.heading.split(':')[0]}" for b in BLOCKS]
)
def test_every_curl_block_ends_as_the_readme_says(block: Block, stack: Stack) -> None:
    env = {**os.environ, "AQ": stack.base, "KEY": stack.key}
    values: dict[str, str] = {}
    for step in block.steps:
        if step.command.startswith("export "):
            # The quick start's own setup line; the test sets AQ and KEY to this stack's.
            assert "AQ=http://127.0.0.1:8000" in step.command
            assert "KEY=$(cat example_project/var/api-key)" in step.command
            continue
        command = step.command
        for name, value in values.items():
            command = command.replace(f"<{name}>", value)
        assert not re.search(r"<(id|signalToken|tokenId|callbackUrl|scheduleId)>", command), (
            f"no value yet: {command}"
        )
        lookup = " -X " not in command
        deadline = time.monotonic() + (LOOKUP_TIMEOUT if lookup else 0)
        while True:
            code, answer, body = _run(command, env)
            problems = [p for e in step.expect if (p := _mismatch(e, code, answer))]
            if not problems or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        assert not problems, (
            f"README line {block.line}: {step.command}\n{problems}\nanswer: {body[:2000]}"
        )
        if isinstance(answer, dict):
            task = answer.get("task")
            task_id = task.get("id") if isinstance(task, dict) else answer.get("taskId")
            if isinstance(task_id, str):
                values["id"] = task_id
            if isinstance(answer.get("signalToken"), str):
                values["signalToken"] = answer["signalToken"]
            if isinstance(answer.get("callbackUrl"), str):
                values["callbackUrl"] = answer["callbackUrl"]
            token = answer.get("token")
            if isinstance(token, dict) and isinstance(token.get("id"), str):
                values["tokenId"] = token["id"]
            schedule = answer.get("schedule")
            if isinstance(schedule, dict) and isinstance(schedule.get("id"), str):
                values["scheduleId"] = schedule["id"]
