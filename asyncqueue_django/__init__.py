"""asyncqueue_django: a self-hosted HTTP task service with wait-for-signal, as a Django app.

Importing this package imports no Django, DRF or Celery, so tools can read the version cheaply.
"""

from __future__ import annotations

__version__ = "0.1.0.dev0"
