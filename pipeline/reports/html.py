"""The HTML of `stylebatch report`: a page head, one card per results row, a page tail.

Every string that comes from a results table (paths, errors, ids) goes through
`html.escape` before it reaches the page, in text and in attributes alike, and the
page's own script only ever sets text (`textContent`), never markup. A Content Security
Policy with a per-page nonce lets only the page's own style and script run and only
embedded (data:) images load, so nothing reaches the network. The page's markup, style and
script are package data files in `templates/`.
"""

from __future__ import annotations

import datetime
import math
import secrets
from collections.abc import Mapping
from html import escape
from importlib import resources
from string import Template
from typing import Any

from pipeline.batch.columns import PARAMETER_COLUMNS
from pipeline.reports.thumbnails import Thumbnail, file_name


def _template(name: str) -> str:
    """A file of the page's own markup, style or script (package data in `templates/`)."""
    return (resources.files("pipeline.reports") / "templates" / name).read_text(encoding="utf-8")


# The style and script (which groups and sorts the cards in place, reading only data-*
# attributes and writing only text), and the page's three parts with $-placeholders.
_STYLE, _SCRIPT = _template("report.css"), _template("report.js")
_HEAD, _TAIL, _CARD = (Template(_template(name)) for name in ("head.html", "tail.html", "card.html"))

_PARAMETERS = (*((column.label or column.name, column.name) for column in PARAMETER_COLUMNS), ("weights", "weights"))
_LOSSES = (("global", "loss_global"), ("local", "loss_local"), ("content", "loss_content"),
           ("total", "loss_total"))


class ReportPage:
    """Writes the page in three parts (head, cards, tail) so that rows can be streamed in between."""

    def __init__(self) -> None:
        self.nonce = secrets.token_urlsafe(18)

    def head(self, source: str, run_id: str | None, counts: Mapping[str, int]) -> str:
        total = sum(counts.values())
        filters = "\n".join(
            f'<label><input type="checkbox" data-status="{escape(status)}" checked> {escape(status)} '
            f"({count})</label>" for status, count in counts.items())
        return _HEAD.substitute(
            nonce=self.nonce, style=_STYLE, source=escape(source), rows=total,
            run_note=f" (run {escape(run_id)})" if run_id else "",
            counts=escape(", ".join(f"{count} {status}" for status, count in counts.items()) or "no rows"),
            generated=escape(datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")),
            filters=filters)

    def tail(self) -> str:
        return _TAIL.substitute(nonce=self.nonce, script=_SCRIPT)


def card(row: Mapping[str, Any], content: Thumbnail, style: Thumbnail, result: Thumbnail) -> str:
    """One results row as an <article>; every value from the table is escaped."""
    status = row.get("status") or "unknown"
    error = row.get("error")
    return _CARD.substitute(
        status=escape(status), style_name=escape(row.get("style") or ""),
        content_name=escape(row.get("content") or ""), run=escape(row.get("run_id") or ""),
        row=escape(str(row.get("row", ""))), loss=_number_attribute(row.get("loss_total")),
        seconds=_number_attribute(row.get("synthesis_seconds")),
        content_figure=figure("content", row.get("content"), content),
        style_figure=figure("style", row.get("style"), style),
        result_figure=figure("result", row.get("output"), result),
        parameters=_definitions(row, _PARAMETERS, "{:g}"), losses=_definitions(row, _LOSSES, "{:.4g}"),
        timing=escape(timing(row)),
        all_parameters=(f"\n<details><summary>all parameters</summary><pre>{escape(row['params'])}</pre></details>"
                        if row.get("params") else ""),
        error=f'\n<pre class="error">{escape(error)}</pre>' if error else "")


def figure(role: str, location: str | None, thumbnail: Thumbnail) -> str:
    """A captioned thumbnail, or a placeholder that says why there is no image."""
    name = escape(file_name(location) or "(none)")
    title = escape(location or "")
    if thumbnail.data_uri and thumbnail.image is not None:
        picture = (f'<img src="{escape(thumbnail.data_uri)}" alt="{escape(role)}: {name}" '
                   f'width="{thumbnail.image.width}" height="{thumbnail.image.height}">')
    else:
        picture = (f'<div class="missing" role="img" aria-label="{escape(role)}: no image">'
                   f"<strong>no {escape(role)} image</strong>{escape(thumbnail.reason)}</div>")
    return f'<figure class="{escape(role)}">{picture}<figcaption title="{title}">{escape(role)}: {name}' \
           f"</figcaption></figure>"


def timing(row: Mapping[str, Any]) -> str:
    """Seconds spent, evaluations and where it ran, for the rows that ran."""
    parts = [f"{label} {row[key]:.1f} s" for label, key in (("synthesis", "synthesis_seconds"),
                                                            ("load", "load_seconds"), ("write", "write_seconds"))
             if row.get(key) is not None]
    if row.get("evaluations") is not None:
        parts.append(f"{row['evaluations']} evaluations")
    if row.get("device"):
        parts.append(f"{row['device']} on {row.get('worker_host') or '?'}")
    return " · ".join(parts) or "did not run"


def _definitions(row: Mapping[str, Any], fields: tuple[tuple[str, str], ...], number_format: str) -> str:
    items = []
    for label, key in fields:
        value = row.get(key)
        shown = ("\N{EN DASH}" if value is None
                 else number_format.format(value) if isinstance(value, float) else str(value))
        items.append(f"<dt>{escape(label)}</dt><dd>{escape(shown)}</dd>")
    return "".join(items)


def _number_attribute(value: float | None) -> str:
    """A number for sorting in the page's script; empty (sorted last) when missing or not finite."""
    return repr(float(value)) if value is not None and math.isfinite(value) else ""
