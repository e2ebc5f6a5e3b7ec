"""A raw TCP peer for the hostile-target tests: it speaks bytes exactly as a misbehaving server
would (slowly, with odd headers, cutting its answer short), so nothing depends on an HTTP
library being polite. The ``peers`` fixture makes them and closes them after the test."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

#: How long a slow peer's whole answer would take: far longer than any deadline tested here, so
#: "the client hung up before the peer finished" is a plain fact, not a timing threshold.
SLOW_SECONDS = 12.0


@dataclass
class Conn:
    request: bytes = b""
    bytes_sent: int = 0
    finished: bool = False  # the peer sent its whole script
    client_hung_up: bool = False  # the client closed the connection first


@dataclass
class RawPeer:
    """A TCP server on ``host`` that reads one request head and then plays ``script``: a list
    of ``(bytes, pause_after_seconds)``. It records every connection."""

    script: list[tuple[bytes, float]]
    host: str = "127.0.0.1"
    patience: float = SLOW_SECONDS  # how long it waits for a request head
    conns: list[Conn] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            conn = Conn()
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(client, conn), daemon=True).start()

    def _serve(self, client: socket.socket, conn: Conn) -> None:
        client.settimeout(self.patience)
        try:
            while b"\r\n\r\n" not in conn.request:
                chunk = client.recv(65536)
                if not chunk:
                    conn.client_hung_up = True
                    return
                conn.request += chunk
            head, _, body = conn.request.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            while len(body) < length:  # read the whole request, so a peek below sees only EOF
                chunk = client.recv(65536)
                if not chunk:
                    conn.client_hung_up = True
                    return
                body += chunk
                conn.request += chunk
            for data, pause in self.script:
                if data:
                    client.sendall(data)
                    conn.bytes_sent += len(data)
                if pause:
                    # A closed client shows up as EOF (or a reset) while we wait.
                    client.settimeout(pause)
                    try:
                        if client.recv(1, socket.MSG_PEEK) == b"":
                            conn.client_hung_up = True
                            return
                    except TimeoutError:
                        pass
            conn.finished = True
        except TimeoutError:
            conn.finished = True  # waited the whole script out: the client never gave up
        except OSError:
            conn.client_hung_up = True
        finally:
            client.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def drip(data: bytes, pause: float) -> list[tuple[bytes, float]]:
    """``data`` one byte at a time, ``pause`` seconds apart."""
    return [(data[i : i + 1], pause) for i in range(len(data))]


@pytest.fixture
def peers() -> Iterator[Callable[..., RawPeer]]:
    made: list[RawPeer] = []

    def make(
        script: list[tuple[bytes, float]], host: str = "127.0.0.1", patience: float = SLOW_SECONDS
    ) -> RawPeer:
        peer = RawPeer(script, host, patience)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()
