"""The report as one HTML file: inline CSS, the charts embedded as base64 PNG data URIs, no
script, no font or stylesheet fetched, so it opens offline and can be mailed or archived.

Jinja2 with autoescaping renders it: every string that comes from the data is HTML-escaped.
It draws nothing (charts.py) and reads nothing from the warehouse (data.py).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from runner import __version__ as VERSION
from runner.report.charts import Chart
from runner.report.data import (
    AB_TESTS,
    EQUITY,
    EVENT_ROWS,
    EVENTS,
    IMPORTANCES,
    OPTIMIZATION,
    REGIMES,
    ROLLING,
    SUMMARY,
    ReportData,
)

TITLE = "tradebase report"
REASON_CHARS = 400  # the timeline's reasons are cut here (the full text is in improvement_events)

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}{% if data.component %} · {{ data.component }}{% endif %}</title>
<style>
:root { --ink: #1b1b1b; --muted: #5c5c5c; --line: #d9d9d9; --band: #f5f7fa;
        --critical: #b33c00; --warning: #8a5a00; --ok: #00604a; --accent: #0072b2; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 20px 60px; }
header { border-bottom: 2px solid var(--accent); margin-bottom: 12px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-top: 8px; border-top: 1px solid var(--line); }
h3 { font-size: 16px; margin: 20px 0 6px; }
p.lead { margin: 0 0 10px; color: var(--muted); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0 14px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
nav ul { list-style: none; padding: 0; margin: 8px 0 0; display: flex; flex-wrap: wrap; gap: 6px 14px; }
nav a { color: var(--accent); text-decoration: none; }
nav a:hover { text-decoration: underline; }
figure { margin: 12px 0 20px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 14px; margin-top: 6px; max-width: 90ch; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 16px; font-size: 14px; }
th, td { text-align: left; vertical-align: top; padding: 5px 8px; border-bottom: 1px solid var(--line); }
th { background: var(--band); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
.nowrap { white-space: nowrap; }
tbody tr:nth-child(even) { background: #fbfbfb; }
tbody.pairs tr:nth-child(even) { background: transparent; }
tbody.pairs tr.main td { border-bottom: none; }
tr.detail td { padding-top: 0; font-size: 13.5px; }
.id { overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
.empty { padding: 10px 14px; background: var(--band); border-left: 4px solid var(--line); color: var(--muted); }
.notes { padding: 10px 14px; background: #fff8e6; border-left: 4px solid #e69f00; }
.notes ul { margin: 4px 0 0; padding-left: 20px; }
.badge { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 13px; font-weight: 600; }
.critical { color: #fff; background: var(--critical); }
.warning { color: #1b1b1b; background: #f2c14e; }
.ok { color: #fff; background: var(--ok); }
.muted { color: var(--muted); }
ul.reasons { margin: 0; padding-left: 18px; }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; }
</style>
</head>
<body>
<main>
<header>
  <h1>{{ title }}</h1>
  <p class="lead">How the trading strategy components are doing and what the improvement engine
  did about it: performance, alerts, optimization runs, A/B tests and the engine's decisions,
  read from the warehouse when this file was generated.</p>
  <dl class="facts">
    <dt>Data range</dt><dd>{% if data.data_start %}{{ data.data_start }} to {{ data.data_end }}{% else %}no daily data{% endif %}{% if data.days %} (last {{ data.days }} days){% endif %}</dd>
    <dt>Components</dt><dd>{% if data.component %}{{ data.component }} only{% elif data.components %}{{ data.components | join(", ") }}{% else %}none{% endif %}</dd>
    <dt>Generated at</dt><dd>{{ data.generated_at | when }}</dd>
    <dt>Warehouse</dt><dd>{{ data.source }}</dd>
  </dl>
  <nav aria-label="Sections"><ul>
  {% for anchor, name in toc %}<li><a href="#{{ anchor }}">{{ name }}</a></li>{% endfor %}
  </ul></nav>
</header>

{% if data.notes %}
<div class="notes" role="note"><strong>Sections without data</strong>
<ul>{% for note in data.notes %}<li>{{ note }}</li>{% endfor %}</ul></div>
{% endif %}

{% macro empty(section) -%}
<p class="empty" data-empty="{{ section }}">{{ data.missing.get(section) or "Nothing to show for this section." }}</p>
{%- endmacro %}

{% macro figure(chart) -%}
<figure data-chart="{{ chart.name }}">
  <img src="{{ images[chart.name] }}" alt="{{ chart.title }}">
  <figcaption>{{ chart.caption }}</figcaption>
</figure>
{%- endmacro %}

<section id="summary">
<h2>Summary</h2>
{% if data.summary %}
<table>
<thead><tr><th>component</th><th class="num">production version</th><th>open alerts</th><th>A/B test</th><th class="num">equity</th><th>last day</th></tr></thead>
<tbody>
{% for row in data.summary %}
<tr>
  <td>{{ row.component_id }}</td>
  <td class="num">{% if row.production_version %}v{{ row.production_version }}{% else %}<span class="muted">v1 (seed)</span>{% endif %}</td>
  <td>{% for status, count in row.open_alerts | dictsort %}<span class="badge {{ status }}">{{ count }} {{ status }}</span> {% else %}<span class="muted">none</span>{% endfor %}</td>
  <td>{{ row.test or "—" }}</td>
  <td class="num">{{ row.last_equity | money }}</td>
  <td class="nowrap">{{ row.last_date or "—" }}</td>
</tr>
{% endfor %}
</tbody></table>
{% else %}{{ empty("summary") }}{% endif %}
</section>

<section id="equity">
<h2>Equity</h2>
{% for chart in charts_of("equity") %}{{ figure(chart) }}{% else %}{{ empty("equity") }}{% endfor %}
</section>

<section id="rolling">
<h2>Rolling metrics and underperforming periods</h2>
{% for chart in charts_of("rolling") %}{{ figure(chart) }}{% else %}{{ empty("rolling") }}{% endfor %}
{% if periods %}
<h3>Underperforming periods</h3>
<div class="scroll"><table>
<thead><tr><th>component</th><th>metric</th><th class="num">window</th><th>from</th><th>to</th><th class="num">days</th><th class="num">worst</th><th class="num">P&amp;L</th><th class="num">trades</th><th>dominant regime</th><th>state</th></tr></thead>
<tbody>
{% for p in periods %}
<tr><td>{{ p.component_id }}</td><td>{{ p.metric }}</td><td class="num">{{ p.window_days }}d</td><td class="nowrap">{{ p.start_date }}</td><td class="nowrap">{{ p.end_date }}</td><td class="num">{{ p.n_days }}</td><td class="num">{{ p.worst }}</td><td class="num">{{ p.pnl | money }}</td><td class="num">{{ p.n_trades }}</td><td>{{ p.dominant_regime or "—" }}</td><td>{% if p.is_open %}<span class="badge critical">open</span>{% else %}ended{% endif %}{% if p.has_critical %} · critical{% endif %}</td></tr>
{% endfor %}
</tbody></table></div>
{% endif %}
</section>

<section id="regimes">
<h2>Performance by market regime</h2>
{% for chart in charts_of("regimes") %}{{ figure(chart) }}{% else %}{{ empty("regimes") }}{% endfor %}
</section>

<section id="optimization">
<h2>Optimization runs</h2>
{% if data.runs %}
<div class="scroll"><table>
<thead><tr><th>run</th><th>component</th><th>kind</th><th>started (UTC)</th><th>verdict</th><th class="num">trials (pruned)</th><th class="num">DSR</th><th class="num">PBO</th><th class="num">holdout p</th></tr></thead>
<tbody class="pairs">
{% for run in data.runs %}
<tr class="main">
  <td class="id">{{ run.run_id }}</td><td>{{ run.component_id }}</td><td>{{ run.kind }}</td>
  <td class="nowrap">{{ run.started_at | when }}</td>
  <td>{% if run.verdict == "candidate" %}<span class="badge ok">candidate v{{ run.candidate_version }}</span>{% elif run.verdict in ("rejected", "failed") %}<span class="badge warning">{{ run.verdict }}</span>{% else %}{{ run.verdict }}{% endif %}</td>
  <td class="num">{{ run.n_trials }} ({{ run.n_pruned }})</td>
  <td class="num">{{ run.dsr | fixed(3) }}</td><td class="num">{{ run.pbo | fixed(2) }}</td><td class="num">{{ run.holdout_p | fixed(3) }}</td>
</tr>
<tr class="detail"><td colspan="9">{% if run.reasons %}<ul class="reasons">{% for reason in run.reasons %}<li>{{ reason }}</li>{% endfor %}</ul>{% elif run.verdict == "candidate" %}Every gate passed.{% else %}<span class="muted">No reason recorded.</span>{% endif %}{% if run.study_note %}<div class="muted">Optuna study: {{ run.study_note }}.</div>{% endif %}</td></tr>
{% endfor %}
</tbody></table></div>
{% endif %}
{% for chart in charts_of("optimization") %}{{ figure(chart) }}{% else %}{{ empty("optimization") }}{% endfor %}
</section>

<section id="importances">
<h2>Parameter and feature importances</h2>
{% for chart in charts_of("importances") %}{{ figure(chart) }}{% else %}<p class="empty" data-empty="importances">{{ data.missing.get("importances") or "No importances yet: no recent search has enough complete trials and no model version has been trained." }}</p>{% endfor %}
</section>

<section id="ab_tests">
<h2>A/B tests</h2>
{% for chart in charts_of("ab_tests") %}{{ figure(chart) }}{% else %}{{ empty("ab_tests") }}{% endfor %}
{% if data.ab_tests %}
<div class="scroll"><table>
<thead><tr><th>test</th><th>component</th><th>state</th><th class="num">trades control / treatment</th><th class="num">estimate</th><th class="num">confidence sequence</th><th class="num">p (always valid)</th><th class="num">looks</th></tr></thead>
<tbody class="pairs">
{% for t in data.ab_tests %}
<tr class="main">
  <td>{{ t.test_name }}<div class="muted id">{{ t.test_id }}</div></td><td>{{ t.component_id }}</td>
  <td>{{ t.status | replace("_", " ") }}{% if t.status == "running" %} at {{ t.current_stage }}%{% endif %}<div class="muted">started <span class="nowrap">{{ t.started_at | when }}</span></div>{% if t.ended_at %}<div class="muted">ended <span class="nowrap">{{ t.ended_at | when }}</span></div>{% endif %}</td>
  <td class="num">{{ t.n_control }} / {{ t.n_treatment }}</td>
  <td class="num">{{ t.estimate | pct(3) }}</td>
  <td class="num">{% if t.cs_lower is not none %}[{{ t.cs_lower | pct(3) }}, {{ t.cs_upper | pct(3) }}]{% else %}—{% endif %}<div class="muted">−m = {{ (-t.margin) | pct(3) }}</div></td>
  <td class="num">{{ t.always_valid_p | sci }}</td>
  <td class="num">{{ t.look_count }} ({{ t.looks | length }} recorded)</td>
</tr>
<tr class="detail"><td colspan="8"><strong>Decision:</strong> {{ t.decision_reason or "no look yet." }}</td></tr>
{% endfor %}
</tbody></table></div>
<p class="muted">Only the looks that moved a test (advanced, extended, paused or ended it) are
recorded as events; a look that held leaves only the latest statistics on the test row. The band is
therefore recomputed from both arms' trades with the engine's own formula at the end of each day a
trade closed, up to the trades of the latest look, whose bounds it reproduces.</p>
{% endif %}
</section>

<section id="events">
<h2>Event timeline</h2>
{% if data.events %}
<p class="muted">The engine's decisions from improvement_events, newest first{% if data.events | length >= event_cap %} (the latest {{ event_cap }}){% endif %}; times in UTC.</p>
<div class="scroll"><table>
<thead><tr><th>time</th><th>event</th><th>component</th><th>why</th></tr></thead>
<tbody>
{% for e in data.events %}
<tr><td class="nowrap">{{ e.event_timestamp | when }}</td><td>{{ e.event_type }}</td><td>{{ e.component_id or "—" }}</td><td>{{ e.trigger_reason | cut }}{% if e.links %}<div class="muted id">{{ e.links }}</div>{% endif %}</td></tr>
{% endfor %}
</tbody></table></div>
{% else %}{{ empty("events") }}{% endif %}
</section>

<footer>Generated by <code>runner report</code> (tradebase {{ version }}). Charts are PNG images
embedded in this file; it loads nothing from the network.</footer>
</main>
</body>
</html>
"""


def render_html(data: ReportData, charts: Sequence[Chart]) -> str:
    """The whole report as one HTML document (UTF-8 text)."""
    from jinja2 import Environment, StrictUndefined

    env = Environment(
        autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    env.filters.update(when=_when, money=_money, fixed=_fixed, pct=_pct, sci=_sci, cut=_cut)
    images = {chart.name: _data_uri(chart) for chart in charts}
    sections = (
        (SUMMARY, "Summary"),
        (EQUITY, "Equity"),
        (ROLLING, "Rolling metrics"),
        (REGIMES, "Regimes"),
        (OPTIMIZATION, "Optimization"),
        (IMPORTANCES, "Importances"),
        (AB_TESTS, "A/B tests"),
        (EVENTS, "Events"),
    )
    return env.from_string(_TEMPLATE).render(
        title=TITLE,
        data=data,
        toc=sections,
        images=images,
        charts_of=lambda section: [c for c in charts if c.section == section],
        periods=_periods(data),
        event_cap=EVENT_ROWS,
        version=VERSION,
    )


def _data_uri(chart: Chart) -> str:
    return "data:image/png;base64," + base64.b64encode(chart.path.read_bytes()).decode("ascii")


def _periods(data: ReportData) -> list[dict[str, Any]]:
    if data.periods is None or data.periods.empty:
        return []
    rows: list[dict[str, Any]] = []
    for record in data.periods.sort_values("start_date", ascending=False).to_dict("records"):
        metric = str(record["metric"])
        worst = record.get("worst_value")
        record["worst"] = (
            _pct(worst, 1)
            if metric in ("win_rate", "max_drawdown", "model_accuracy")
            else _fixed(worst, 2)
        )
        rows.append({str(k): v for k, v in record.items()})
    return rows


# -- formats (filters) ---------------------------------------------------------------------------
def _finite(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            from datetime import UTC

            value = value.astimezone(UTC)
        return f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, date):
        return value.isoformat()
    return "—"


def _money(value: Any) -> str:
    number = _finite(value)
    return "—" if number is None else f"{number:,.2f}"


def _fixed(value: Any, digits: int = 2) -> str:
    number = _finite(value)
    return "—" if number is None else f"{number:.{digits}f}"


def _pct(value: Any, digits: int = 2) -> str:
    number = _finite(value)
    return "—" if number is None else f"{100 * number:.{digits}f}%"


def _sci(value: Any) -> str:
    number = _finite(value)
    if number is None:
        return "—"
    return f"{number:.3g}" if number >= 1e-3 else f"{number:.2e}"


def _cut(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1].rstrip() + "…"
