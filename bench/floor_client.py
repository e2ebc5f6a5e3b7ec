"""The callback floor: ``python -m bench.floor_client URL N`` POSTs N times with one
``requests.Session``, the same JSON body a task sends, path ``URL<i>``."""

from __future__ import annotations

import sys

import requests


def main() -> None:
    url, n = sys.argv[1], int(sys.argv[2])
    session = requests.Session()
    session.trust_env = False
    for i in range(n):
        session.post(f"{url}{i}", json={"orderId": 1}, timeout=30).content  # noqa: B018


if __name__ == "__main__":
    main()
