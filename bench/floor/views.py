"""The create floor: a bare DRF view that parses the same JSON and inserts one comparable row.

No authentication, validation, SSRF check, idempotency or broker publish: what is left is
the cost of the server, Django, DRF's request/response cycle and one INSERT.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from asyncqueue_django.models import Team
from bench.floor.models import FloorRow

_team_id: int | None = None


def _team() -> int:
    global _team_id
    if _team_id is None:
        _team_id = Team.objects.values_list("pk", flat=True).order_by("pk").first()
    assert _team_id is not None, "the benchmark creates a team first"
    return _team_id


class FloorCreateView(APIView):
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]
    throttle_classes: list[Any] = []

    def post(self, request: Request) -> Response:
        data = request.data
        now = timezone.now()
        row = FloorRow.objects.create(
            team_id=_team(),
            target_url=data["targetUrl"],
            payload=data.get("payload"),
            queue=data.get("queue", "default"),
            next_attempt_at=now,
            dispatched_at=now,
        )
        return Response({"task": {"id": str(row.pk), "status": row.status}}, status=201)
