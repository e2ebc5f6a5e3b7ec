"""Public Django signals, sent after the transaction that caused them commits.

``task_finished(sender=Task, task_id=UUID, status=str)`` fires once per terminal transition.
"""

from __future__ import annotations

from django.dispatch import Signal

task_finished = Signal()
