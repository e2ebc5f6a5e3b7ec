"""The admin dashboard (``/admin/asyncqueue/dashboard/``): what the work did over the last
hours and where it stands now, as charts drawn on the server (inline SVG: no CDN, no
JavaScript library). A few lines of plain JavaScript re-fetch the charts' fragment every
``REFRESH_SECONDS`` without reloading the page.

Read-only. Its queries are the bounded ones of ``stats.py`` (a fixed number per page, each an
index range over the window or a partial index over open work), so the page costs the same
with a thousand tasks or a million.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from asyncqueue_django import stats
from asyncqueue_django.models import Dashboard, Task
from asyncqueue_django.states import TaskStatus

if TYPE_CHECKING:
    DashboardAdminBase = admin.ModelAdmin[Dashboard]
else:
    DashboardAdminBase = admin.ModelAdmin

#: Windows the page offers (hours); anything else in ``?hours=`` falls back to the default.
WINDOWS = (1, 3, 6, 12, 24)
DEFAULT_HOURS = 3
REFRESH_SECONDS = 15
NOTHING = "\N{EN DASH}"
#: Most bars or points across a chart (finer minutes are summed into slots).
MAX_SLOTS = 180
#: Slots of the latency chart (percentiles need enough attempts per slot).
LATENCY_SLOTS = 36

COLORS = {
    "created": "#1f6fb5",
    TaskStatus.COMPLETED: "#2e7d32",
    TaskStatus.FAILED: "#c62828",
    TaskStatus.TIMEOUT: "#ef6c00",
    TaskStatus.CANCELLED: "#8a8a8a",
    TaskStatus.PENDING: "#1f6fb5",
    TaskStatus.DELAYED: "#8fb8de",
    TaskStatus.PROCESSING: "#ef6c00",
    TaskStatus.WAITING: "#7b3fa0",
    TaskStatus.POLLING: "#00838f",
    "p50": "#1f6fb5",
    "p95": "#7b3fa0",
    "p99": "#c62828",
}
FINISHED_STATUSES = (
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.TIMEOUT,
    TaskStatus.CANCELLED,
)

# Chart geometry (SVG user units; the SVG scales to its container's width).
WIDTH, HEIGHT = 900, 220
HALF_WIDTH = 460  # the charts of half-width panels (so their text stays readable)
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    values: Sequence[float | None]


def _number(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value``."""
    if value <= 0:
        return 1.0
    step = 1.0
    while step * 10 <= value:
        step *= 10
    for factor in (1, 2, 2.5, 5, 10):
        if value <= step * factor:
            return step * factor
    return step * 10  # pragma: no cover


def _frame(
    title: str,
    body: str,
    y_max: float,
    y_unit: str,
    labels: Sequence[str],
    width: int = WIDTH,
) -> SafeString:
    """An SVG chart: y grid with 4 ticks, x labels under the plot, the marks in ``body``."""
    plot_w, plot_h = width - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="aq-chart" viewBox="0 0 {width} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">'
    ]
    for i in range(5):
        y = TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line class="aq-grid" x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="aq-tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(_number(y_max * i / 4))}{escape(y_unit)}</text>"
        )
    step = max(1, len(labels) // 6)
    for i in range(0, len(labels), step):
        x = LEFT + plot_w * (i + 0.5) / max(1, len(labels))
        parts.append(
            f'<text class="aq-tick" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
            f"{escape(labels[i])}</text>"
        )
    parts.append(body)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped


def bar_chart(
    title: str, labels: Sequence[str], stacks: Sequence[Series], line: Series | None = None
) -> SafeString:
    """Stacked bars (one stack per label) with an optional line over them."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(1, len(labels))
    totals = [sum(s.values[i] or 0 for s in stacks) for i in range(len(labels))]
    line_values = [v or 0 for v in line.values] if line else []
    y_max = _nice_max(max([*totals, *line_values, 0]))
    width = plot_w / n
    marks = []
    for i, label in enumerate(labels):
        base = 0.0
        for s in stacks:
            value = s.values[i] or 0
            if not value:
                continue
            h = plot_h * value / y_max
            y = TOP + plot_h - plot_h * base / y_max - h
            marks.append(
                f'<rect class="aq-bar" x="{LEFT + i * width + width * 0.1:.1f}" y="{y:.1f}" '
                f'width="{max(width * 0.8, 0.5):.1f}" height="{h:.1f}" fill="{s.color}">'
                f"<title>{escape(label)} {escape(s.name)}: {escape(_number(value))}</title></rect>"
            )
            base += value
    if line is not None:
        points = " ".join(
            f"{LEFT + (i + 0.5) * width:.1f},{TOP + plot_h - plot_h * v / y_max:.1f}"
            for i, v in enumerate(line_values)
        )
        marks.append(
            f'<polyline class="aq-line" points="{points}" fill="none" stroke="{line.color}" '
            f'stroke-width="2"><title>{escape(line.name)}</title></polyline>'
        )
    return _frame(title, "".join(marks), y_max, "", labels)


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    unit: str = "",
    width: int = HALF_WIDTH,
) -> SafeString:
    """Lines, one per series; a missing value (None) breaks the line."""
    plot_w, plot_h = width - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(1, len(labels))
    y_max = _nice_max(max([v for s in series for v in s.values if v is not None] or [0]))
    marks = []
    for s in series:
        runs: list[list[str]] = [[]]
        for i, v in enumerate(s.values):
            if v is None:
                runs.append([])
                continue
            runs[-1].append(
                f"{LEFT + (i + 0.5) * step:.1f},{TOP + plot_h - plot_h * v / y_max:.1f}"
            )
        for run in runs:
            if len(run) == 1:
                x, y = run[0].split(",")
                marks.append(f'<circle class="aq-point" cx="{x}" cy="{y}" r="2" fill="{s.color}"/>')
            elif run:
                marks.append(
                    f'<polyline class="aq-line" points="{" ".join(run)}" fill="none" '
                    f'stroke="{s.color}" stroke-width="2"><title>{escape(s.name)}</title>'
                    "</polyline>"
                )
    return _frame(title, "".join(marks), y_max, unit, labels, width)


def hbar_chart(
    title: str, rows: Sequence[tuple[str, Sequence[Series]]], width: int = HALF_WIDTH
) -> SafeString:
    """One horizontal stacked bar per row (label on the left, total on the right); each
    series holds one value."""
    row_h, label_w, total_w = 24, 110, 50
    height = TOP + row_h * max(1, len(rows)) + 4
    totals = [sum(s.values[0] or 0 for s in parts) for _, parts in rows]
    top = _nice_max(max([*totals, 0]))
    plot_w = width - label_w - total_w - RIGHT
    marks = [
        f'<svg class="aq-chart aq-hbars" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}">'
    ]
    for r, ((label, parts), total) in enumerate(zip(rows, totals, strict=True)):
        y = TOP + r * row_h
        marks.append(
            f'<text class="aq-tick" x="{label_w - 8}" y="{y + 15}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
        x = float(label_w)
        for s in parts:
            value = s.values[0] or 0
            if not value:
                continue
            w = plot_w * value / top
            marks.append(
                f'<rect class="aq-bar" x="{x:.1f}" y="{y + 3}" width="{max(w, 1):.1f}" '
                f'height="{row_h - 8}" fill="{s.color}"><title>{escape(label)} '
                f"{escape(s.name)}: {escape(_number(value))}</title></rect>"
            )
            x += w
        marks.append(
            f'<text class="aq-tick" x="{width - RIGHT}" y="{y + 15}" text-anchor="end">'
            f"{escape(_number(total))}</text>"
        )
    if not rows:
        marks.append(f'<text class="aq-tick" x="{label_w}" y="{TOP + 15}">none</text>')
    marks.append("</svg>")
    return mark_safe("".join(marks))  # noqa: S308 - every text above is escaped


def legend(series: Sequence[Series]) -> SafeString:
    items = [
        format_html('<span class="aq-key"><i style="background:{}"></i>{}</span>', s.color, s.name)
        for s in series
    ]
    return mark_safe("".join(items))  # noqa: S308 - each item is format_html'd


# -- the page ----------------------------------------------------------------------------------


def _slots(minutes: Sequence[datetime], per_slot: int) -> list[list[datetime]]:
    return [list(minutes[i : i + per_slot]) for i in range(0, len(minutes), per_slot)]


def _label(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%H:%M")


def build_context(now: datetime, hours: int) -> dict[str, Any]:
    """Every chart and number of the page (a fixed number of queries: see ``stats``)."""
    win = stats.window(now, hours)
    depths = stats.queue_depths(now)
    backlog = stats.webhook_backlog(now)
    waiting = stats.waiting_by_time_left(now)

    slots = _slots(win.minutes, max(1, len(win.minutes) // MAX_SLOTS))
    labels = [_label(slot[0]) for slot in slots]
    finished = [
        Series(
            str(status.label).lower(),
            COLORS[status],
            [sum(win.finished.get(status, {}).get(m, 0) for m in slot) for slot in slots],
        )
        for status in FINISHED_STATUSES
    ]
    created = Series(
        "created", COLORS["created"], [sum(win.created.get(m, 0) for m in slot) for slot in slots]
    )
    per = "minute" if len(slots[0]) == 1 else f"{len(slots[0])} minutes"

    completed = win.finished_total(TaskStatus.COMPLETED)
    unsuccessful = win.finished_total(TaskStatus.FAILED) + win.finished_total(TaskStatus.TIMEOUT)
    ratio_slots = _slots(win.minutes, max(1, len(win.minutes) // LATENCY_SLOTS))
    ratio_values: list[float | None] = []
    latency: dict[str, list[float | None]] = {"p50": [], "p95": [], "p99": []}
    all_buckets: dict[int | None, int] = {}
    for slot in ratio_slots:
        ok = sum(win.finished.get(TaskStatus.COMPLETED, {}).get(m, 0) for m in slot)
        bad = sum(
            win.finished.get(s, {}).get(m, 0)
            for s in (TaskStatus.FAILED, TaskStatus.TIMEOUT)
            for m in slot
        )
        ratio_values.append(100 * ok / (ok + bad) if ok + bad else None)
        buckets: dict[int | None, int] = {}
        for m in slot:
            for bound, n in win.duration_buckets.get(m, {}).items():
                buckets[bound] = buckets.get(bound, 0) + n
                all_buckets[bound] = all_buckets.get(bound, 0) + n
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            value = stats.quantile(buckets, q)
            latency[name].append(None if value is None else value)
    ratio_labels = [_label(slot[0]) for slot in ratio_slots]
    latency_series = [Series(name, COLORS[name], values) for name, values in latency.items()]
    overall = {
        name: stats.quantile(all_buckets, q)
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
    }

    queue_rows = [
        (
            d.queue,
            [Series(s.value, COLORS[s], [d.counts[s.value]]) for s in stats.OPEN_STATUSES],
        )
        for d in depths
    ]
    return {
        "hours": hours,
        "windows": WINDOWS,
        "now": now,
        "per": per,
        "refresh_seconds": REFRESH_SECONDS,
        "throughput_chart": bar_chart("Tasks finished per " + per, labels, finished, created),
        "throughput_legend": legend([created, *finished]),
        "created_total": sum(win.created.values()),
        "finished_total": sum(sum(v.values()) for v in win.finished.values()),
        "success_ratio": (100 * completed / (completed + unsuccessful))
        if completed + unsuccessful
        else None,
        "success_chart": line_chart(
            "Success ratio",
            ratio_labels,
            [Series("success", COLORS[TaskStatus.COMPLETED], ratio_values)],
            "%",
        ),
        "latency_chart": line_chart("Callback latency", ratio_labels, latency_series, " ms"),
        "latency_legend": legend(latency_series),
        "latency": {k: (None if v is None else round(v)) for k, v in overall.items()},
        "attempts_total": sum(all_buckets.values()),
        "queue_chart": hbar_chart("Open tasks per queue", queue_rows),
        "queue_legend": legend([Series(s.value, COLORS[s], []) for s in stats.OPEN_STATUSES]),
        "queues": [
            {
                "name": d.queue,
                "total": d.total,
                "oldest": _duration(d.oldest_pending_age) if d.oldest_pending_age else NOTHING,
            }
            for d in depths
        ],
        "waiting_chart": hbar_chart(
            "Waiting tasks by time left",
            [(label, [Series("waiting", COLORS[TaskStatus.WAITING], [n])]) for label, n in waiting],
        ),
        "waiting_total": sum(n for _, n in waiting),
        "backlog": backlog,
        "backlog_oldest": _duration(backlog.oldest_age) if backlog.pending else NOTHING,
    }


@admin.register(Dashboard)
class DashboardAdmin(DashboardAdminBase):
    """The dashboard page in place of a change list; visible to whoever may view tasks."""

    def get_urls(self) -> list[URLPattern]:
        info = (self.opts.app_label, self.opts.model_name)
        view = self.admin_site.admin_view(self.dashboard_view)
        return [path("", view, name="{}_{}_changelist".format(*info))]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        opts = Task._meta
        return any(
            request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")
            for action in ("view", "change")
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """The page, or with ``?partial=1`` only its charts (what the page re-fetches)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            hours = int(request.GET.get("hours", DEFAULT_HOURS))
        except ValueError:
            hours = DEFAULT_HOURS
        if hours not in WINDOWS:
            hours = DEFAULT_HOURS
        try:  # ?refresh=N: seconds between refreshes (bounded; for a wall screen, or tests)
            refresh = min(max(int(request.GET.get("refresh", REFRESH_SECONDS)), 2), 3600)
        except ValueError:
            refresh = REFRESH_SECONDS
        context = build_context(timezone.now(), hours)
        context["refresh_seconds"] = refresh
        if request.GET.get("partial"):
            response = TemplateResponse(request, "admin/asyncqueue/dashboard/charts.html", context)
        else:
            context.update(
                {
                    **self.admin_site.each_context(request),
                    "title": "Dashboard",
                    "opts": self.opts,
                    "tasks_url": "../task/",
                }
            )
            request.current_app = self.admin_site.name
            response = TemplateResponse(request, "admin/asyncqueue/dashboard/page.html", context)
        response["Cache-Control"] = "no-store"
        return response


__all__ = ["DashboardAdmin", "bar_chart", "build_context", "hbar_chart", "line_chart"]
