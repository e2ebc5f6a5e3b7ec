"""Benchmarks of asyncqueue_django, each against a floor measured in the same run.

Run from the repository root with the project's virtualenv::

    python -m bench all                 # every benchmark, default scale
    python -m bench dispatch --smoke    # one benchmark, tiny sizes
    python -m bench --help              # backends and scale knobs

Each benchmark prints a table, writes ``bench/results/<name>.json`` and
``bench/results/<name>.png``, and states its floor. Shared machinery is in ``harness``.
"""

from __future__ import annotations

BENCHMARKS = (
    "dispatch",
    "create",
    "callbacks",
    "signal_webhook",
    "expiry",
    "polling",
    "memory",
    "profile",
    "claim",
)
