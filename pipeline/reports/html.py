"""The HTML of `stylebatch report`: a page head, one card per results row, a page tail.

Every string that comes from a results table (paths, errors, ids) goes through
`html.escape` before it reaches the page, in text and in attributes alike, and the
page's own script only ever sets text (`textContent`), never markup. A Content Security
Policy with a per-page nonce lets only the page's own style and script run and only
embedded (data:) images load, so nothing reaches the network.
"""

from __future__ import annotations

import datetime
import math
import secrets
from collections.abc import Mapping
from html import escape
from string import Template
from typing import Any

from pipeline.reports.thumbnails import Thumbnail, file_name

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f4f4;color:#222}
header.page{padding:12px 18px;background:#fff;border-bottom:1px solid #ddd}
header.page h1{font-size:18px;margin:0 0 4px}
.toolbar{display:flex;flex-wrap:wrap;gap:14px;align-items:center;margin-top:8px}
main{padding:12px 18px}
section.group>h2{font-size:15px;margin:18px 0 8px;border-bottom:1px solid #ccc}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;width:444px}
.card.failed{border-color:#d88}
.card>header{display:flex;gap:8px;align-items:baseline;font-size:12px;color:#666}
.badge{font-weight:600;padding:0 6px;border-radius:3px;color:#fff}
.badge.ok{background:#2a7}.badge.skipped{background:#888}.badge.failed{background:#c33}
.thumbs{display:flex;gap:6px;align-items:flex-start;margin:6px 0}
figure{margin:0;width:112px}
figure.result{width:160px}
figure img{display:block;width:100%;height:auto}
figcaption{font-size:11px;color:#555;overflow-wrap:anywhere}
.missing{display:flex;flex-direction:column;justify-content:center;min-height:90px;padding:4px;
 background:repeating-linear-gradient(45deg,#eee 0 8px,#e2e2e2 8px 16px);color:#555;font-size:11px;
 border:1px dashed #aaa;overflow-wrap:anywhere}
.missing strong{color:#333}
dl{display:grid;grid-template-columns:repeat(4,auto 1fr);gap:0 6px;margin:4px 0;font-size:12px}
dt{color:#777}dd{margin:0;font-variant-numeric:tabular-nums}
.timing{font-size:12px;color:#555;margin:4px 0}
details{font-size:12px;color:#555}details pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:2px 0}
pre.error{white-space:pre-wrap;overflow-wrap:anywhere;background:#fdeaea;color:#811;padding:6px;
 margin:4px 0 0;font-size:12px}
"""

# Groups and sorts the cards in place; reads only data-* attributes and writes only text.
_SCRIPT = """
(function(){
  const main=document.getElementById('cards');
  const cards=Array.from(main.querySelectorAll('article.card'));
  const num=v=>v===''?Infinity:Number(v);
  const sorters={
    row:(a,b)=>a.dataset.run.localeCompare(b.dataset.run)||num(a.dataset.row)-num(b.dataset.row),
    loss:(a,b)=>num(a.dataset.loss)-num(b.dataset.loss),
    seconds:(a,b)=>num(a.dataset.seconds)-num(b.dataset.seconds),
    status:(a,b)=>a.dataset.status.localeCompare(b.dataset.status)};
  function arrange(){
    const group=document.getElementById('group').value;
    const sort=document.getElementById('sort').value;
    const shown=new Set(Array.from(document.querySelectorAll('input[data-status]'))
      .filter(box=>box.checked).map(box=>box.dataset.status));
    const ordered=cards.slice().sort((a,b)=>sorters[sort](a,b)||sorters.row(a,b));
    const groups=new Map();
    for(const card of ordered){
      card.hidden=!shown.has(card.dataset.status);
      const key=group?card.dataset[group]:'';
      if(!groups.has(key))groups.set(key,[]);
      groups.get(key).push(card);
    }
    main.replaceChildren();
    for(const key of Array.from(groups.keys()).sort()){
      const section=document.createElement('section');
      section.className='group';
      const visible=groups.get(key).filter(card=>!card.hidden).length;
      if(group){
        const heading=document.createElement('h2');
        heading.textContent=key+' \\u2014 '+visible+' of '+groups.get(key).length+' rows shown';
        section.appendChild(heading);
      }
      const grid=document.createElement('div');
      grid.className='grid';
      grid.append(...groups.get(key));
      section.appendChild(grid);
      main.appendChild(section);
    }
  }
  document.querySelectorAll('.toolbar select,.toolbar input').forEach(el=>el.addEventListener('change',arrange));
  arrange();
})();
"""

_HEAD = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; img-src data:; style-src 'nonce-$nonce'; script-src 'nonce-$nonce'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stylebatch report: $source</title>
<style nonce="$nonce">$style</style>
</head>
<body>
<header class="page">
<h1>stylebatch report</h1>
<div>$rows rows from <code>$source</code>$run_note; $counts. Generated $generated.</div>
<div class="toolbar">
<label>Group <select id="group"><option value="style" selected>by style</option>
<option value="content">by content</option><option value="status">by status</option>
<option value="">none</option></select></label>
<label>Sort <select id="sort"><option value="row" selected>run, row</option>
<option value="loss">final total loss</option><option value="seconds">synthesis time</option>
<option value="status">status</option></select></label>
$filters
</div>
</header>
<main id="cards">
""")

_TAIL = Template("""</main>
<script nonce="$nonce">$script</script>
</body>
</html>
""")

_CARD = Template("""<article class="card $status" data-status="$status" data-style="$style_name" \
data-content="$content_name" data-run="$run" data-row="$row" data-loss="$loss" data-seconds="$seconds">
<header><span class="badge $status">$status</span><span>row $row</span><span>run $run</span></header>
<div class="thumbs">$content_figure$style_figure$result_figure</div>
<dl>$parameters</dl>
<dl>$losses</dl>
<p class="timing">$timing</p>$all_parameters$error
</article>
""")

_PARAMETERS = (("a1", "alpha_global"), ("a2", "alpha_local"), ("a3", "alpha_content"), ("tv", "tv_weight"),
               ("size", "size"), ("levels", "levels"), ("iters", "iters"), ("seed", "seed"),
               ("match", "match_every"), ("search", "search_dim"), ("rerank", "search_candidates"),
               ("step", "search_step"), ("weights", "weights"))
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
