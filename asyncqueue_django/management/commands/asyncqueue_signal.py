"""``manage.py asyncqueue_signal TOKEN --status STATUS [--result JSON] [--error TEXT]``."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from asyncqueue_django import services, validators
from asyncqueue_django.exceptions import AlreadySignalled, InvalidTransition, SignalTokenNotFound
from asyncqueue_django.states import SignalStatus


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
            choices=SignalStatus.values,
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
        try:
            validators.check_signal_error(error)
        except validators.InvalidInput as exc:
            raise CommandError(f"--error {exc.message[0].lower()}{exc.message[1:]}") from None
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
            value = validators.parse_json_text(raw)
        except validators.InvalidInput as exc:
            raise CommandError(f"--result is not valid JSON: {exc.message}.") from None
        try:
            return validators.check_signal_result(value)
        except validators.InvalidInput as exc:
            raise CommandError(f"--result must be at most {exc.limit} bytes.") from None
