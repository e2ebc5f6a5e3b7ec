"""Pieces every admin page shares: the "operate" permission, the read-only inline, the one
action runner and its report, and pretty JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.http import HttpRequest
from django.utils.html import format_html

from asyncqueue_django.exceptions import ServiceError

if TYPE_CHECKING:
    # The stubs make these generic; at run time Django's classes take no type arguments.
    InlineBase = admin.TabularInline[Any, Any]
else:
    InlineBase = admin.TabularInline

T = TypeVar("T")

#: How many refusals one message names (the rest are counted).
MAX_REFUSALS_LISTED = 20


class OperateMixin:
    """Actions are gated on the model's real "change" permission, while the forms stay
    read-only (``has_change_permission`` is False so no page offers a Save button)."""

    model: Any

    def has_operate_permission(self, request: HttpRequest) -> bool:
        opts = self.model._meta.concrete_model._meta
        codename = get_permission_codename("change", opts)
        return request.user.has_perm(f"{opts.app_label}.{codename}")


class ReadOnlyInline(InlineBase):
    """A table of related rows that shows ``fields`` and offers no add, change or delete."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return tuple(self.fields or ())

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def report(
    modeladmin: admin.ModelAdmin[Any],
    request: HttpRequest,
    done: int,
    verb: str,
    noun: str,
    refused: list[str],
) -> None:
    """One success message for what was done, one warning naming what the service refused."""
    if done or not refused:
        modeladmin.message_user(request, f"{verb} {done} {noun}(s).", messages.SUCCESS)
    if refused:
        listed = "; ".join(refused[:MAX_REFUSALS_LISTED])
        more = len(refused) - MAX_REFUSALS_LISTED
        suffix = f"; and {more} more" if more > 0 else ""
        modeladmin.message_user(
            request, f"Refused {len(refused)} {noun}(s): {listed}{suffix}", messages.WARNING
        )


def run_action(
    modeladmin: admin.ModelAdmin[Any],
    request: HttpRequest,
    items: Iterable[T],
    call: Callable[[T], Any],
    *,
    verb: str,
    noun: str,
) -> None:
    """Call ``call(item)`` for each selected item and report. Each call is its own
    transaction, so one refusal (a :class:`ServiceError`, named with the item's pk) does not
    undo the others."""
    done, refused = 0, []
    for item in items:
        try:
            call(item)
            done += 1
        except ServiceError as exc:
            refused.append(f"{getattr(item, 'pk', item)}: {exc.message}")
    report(modeladmin, request, done, verb, noun, refused)


def pretty_json(value: Any) -> str:
    if value is None:
        return "-"
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    return format_html('<pre style="margin:0;white-space:pre-wrap">{}</pre>', text)
