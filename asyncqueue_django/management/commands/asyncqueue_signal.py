"""``manage.py asyncqueue_signal TOKEN --status STATUS [--result JSON] [--error TEXT]``."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from asyncqueue_django import services
from asyncqueue_django.conf import app_settings
from asyncqueue_django.exceptions import AlreadySignalled, InvalidTransition, SignalTokenNotFound
from asyncqueue_django.sanitize import check_json_value

MAX_ERROR_LENGTH = 10_000  # as the signal endpoint


class Command(BaseCommand):
    help = (
        "Send a signal to the task behind a one-time signal token, as POST /v1/signals/TOKEN "
        "does: a waiting task becomes completed or failed; a task whose callback has not "
        "finished yet records the signal and applies it when the callback succeeds. Give '-' as "
        "TOKEN to read it from stdin (keeps it out of the shell history)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("token", metavar="TOKEN", help="The task's signalToken, or '-'.")
        parser.add_argument(
            "--status",
            required=True,
            choices=["completed", "failed"],
            help="The outcome to apply.",
        )
        parser.add_argument(
            "--result", metavar="JSON", help="The task's result, as JSON (e.g. '{\"ok\": true}')."
        )
        parser.add_argument("--error", metavar="TEXT", help="An error message (for 'failed').")

    def handle(self, *args: Any, **options: Any) -> None:
        token = options["token"]
        if token == "-":
            token = sys.stdin.readline()
        token = token.strip()
        if not token:
            raise CommandError("TOKEN must not be empty.")
        result = self._parse_result(options["result"])
        error = options["error"]
        if error is not None and len(error) > MAX_ERROR_LENGTH:
            raise CommandError(f"--error must be at most {MAX_ERROR_LENGTH} characters.")
        if error is not None and "\x00" in error:
            raise CommandError("--error must not contain NUL characters.")
        try:
            outcome = services.signal_task(token, options["status"], result=result, error=error)
        except SignalTokenNotFound:
            raise CommandError("Unknown signal token.") from None
        except InvalidTransition as exc:
            raise CommandError(f"{exc.message}.") from None  # names the current status
        except AlreadySignalled as exc:
            raise CommandError(f"{exc.message}.") from None
        task = outcome.task
        if outcome.applied:
            self.stdout.write(f"Task {task.pk} is now {task.status}.")
        else:
            self.stdout.write(
                f"Signal recorded for task {task.pk} ({task.status}); it is applied when the "
                "callback succeeds."
            )

    @staticmethod
    def _parse_result(raw: str | None) -> Any:
        if raw is None:
            return None
        try:
            value = json.loads(raw, parse_constant=_reject_constant)
            check_json_value(value)
        except RecursionError:
            raise CommandError("--result is nested too deeply.") from None
        except ValueError as exc:
            raise CommandError(f"--result is not valid JSON: {exc}.") from None
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        if size > app_settings.MAX_BODY_BYTES:
            raise CommandError(f"--result must be at most {app_settings.MAX_BODY_BYTES} bytes.")
        return value


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not allowed")
