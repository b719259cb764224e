"""The report's PNG charts, drawn with matplotlib's object API (no pyplot state, Agg canvas).

One figure per chart, closed with the function that drew it; the Okabe–Ito palette (safe for
colour-blind readers) with line styles and hatches so no meaning rests on colour alone. It reads
only `ReportData`; a chart without data is not drawn (the HTML says why instead).
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from runner.report.data import (
    AB_TESTS,
    EQUITY,
    IMPORTANCES,
    METRICS,
    OPTIMIZATION,
    REGIMES,
    ROLLING,
    ABTestInfo,
    ModelImportance,
    ReportData,
    RunInfo,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Okabe & Ito (2008), "Color Universal Design": distinguishable with any colour vision.
BLUE = "#0072B2"
SKY = "#56B4E9"
GREEN = "#009E73"
ORANGE = "#E69F00"
VERMILLION = "#D55E00"
PURPLE = "#CC79A7"
YELLOW = "#F0E442"
BLACK = "#000000"
GREY = "#7F7F7F"
SERIES = (BLUE, ORANGE, GREEN, PURPLE, SKY, VERMILLION, YELLOW, BLACK)
WARNING_COLOUR, CRITICAL_COLOUR = ORANGE, VERMILLION
SHADE = VERMILLION  # underperforming periods

WIDTH = 10.0  # inches; at DPI 100 a chart is 1000 px wide, readable without zoom
DPI = 100
MAX_PANELS = 8
STYLE: dict[Any, Any] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "text.parse_math": False,  # a component id with `$` is text, not TeX
    "savefig.facecolor": "white",
}
METRIC_LABELS = {
    "win_rate": "win rate",
    "sharpe": "Sharpe (annualised)",
    "max_drawdown": "max drawdown (magnitude)",
    "model_accuracy": "model accuracy",
}
OBJECTIVE_LABELS = {
    "sharpe": "mean fold Sharpe",
    "sortino": "mean fold Sortino",
    "calmar": "mean fold Calmar",
    "expectancy": "mean fold expectancy",
}
PERCENT_METRICS = {"win_rate", "max_drawdown", "model_accuracy"}
REGIME_ORDER = ("up_high", "up_mid", "up_low", "down_high", "down_mid", "down_low", "unknown")
LOOK_LABELS = {
    "ab_stage_advanced": "advanced to 50%",
    "ab_stage_extended": "stage extended",
    "ab_test_paused": "paused (sample ratio)",
    "ab_test_promoted": "promoted",
    "ab_test_rolled_back": "rolled back",
    "ab_test_inconclusive": "inconclusive",
}


@dataclass(frozen=True)
class Chart:
    name: str  # file stem and key of ReportResult.chart_paths
    section: str  # the ReportData section it draws
    title: str
    caption: str  # one sentence: how to read it
    path: Path


def draw_charts(data: ReportData, charts_dir: Path) -> list[Chart]:
    """Every chart the data allows, saved as charts_dir/<name>.png, in the report's order."""
    charts_dir.mkdir(parents=True, exist_ok=True)
    charts: list[Chart] = []

    def add(
        name: str, section: str, title: str, caption: str, draw: Callable[[Path], bool]
    ) -> None:
        path = charts_dir / f"{name}.png"
        if draw(path):
            charts.append(Chart(name, section, title, caption, path))

    add(
        "equity",
        EQUITY,
        "Equity curve per component",
        "Each panel is one component's equity (initial capital plus cumulative net P&L, trades "
        "booked on their exit day); dashed lines mark the first trade of a new strategy version, "
        "blue bands the days its A/B treatment traded, dotted lines where an A/B test started, "
        "and red shading the underperforming periods.",
        lambda p: equity_chart(data, p),
    )
    if data.rolling is not None:
        for component in sorted(data.rolling["component_id"].unique()):
            cid = str(component)
            add(
                f"rolling_{slug(cid)}",
                ROLLING,
                f"Rolling metrics of {cid}",
                "Each panel is one metric over trailing 7- and 30-day windows against the "
                "component's warning (orange) and critical (red) thresholds; red shading marks "
                "the underperforming periods (7-day metric at warning or worse) and faint dotted "
                "lines the days with too little evidence to raise an alert.",
                lambda p, cid=cid: rolling_chart(data, cid, p),  # type: ignore[misc]
            )
    add(
        "regimes",
        REGIMES,
        "Performance by market regime",
        f"Win rate and mean net return per trade of each component by the market regime at "
        f"entry (trend_volatility) over the last {data.regime_window or '—'} days; hatched bars "
        "have fewer trades than the minimum to trust, the number above each bar is its trades.",
        lambda p: regime_chart(data, p),
    )
    add(
        "optimization_gates",
        OPTIMIZATION,
        "DSR and PBO of the latest optimization runs",
        "A run's best trial becomes a candidate only when its deflated Sharpe ratio is at or "
        "above the dashed line and its probability of backtest overfitting at or below it; "
        "hatched red bars fail that gate.",
        lambda p: gates_chart(data.runs, p),
    )
    add(
        "optimization_history",
        OPTIMIZATION,
        "Optimization history of the latest searches",
        "Each dot is a complete trial's objective (mean walk-forward fold score) in trial order, "
        "the black step the best so far; ticks along the bottom are trials stopped early by the "
        "pruner, crosses parameter sets the strategy rejected as infeasible.",
        lambda p: history_chart(data.runs, p),
    )
    add(
        "importances",
        IMPORTANCES,
        "Parameter and feature importances",
        "For each recent search, how strongly each parameter separates the best trials from the "
        "rest (PED-ANOVA, shares summing to 1); for each recent model version, how much the "
        "out-of-sample log loss rises when a feature is shuffled (or its share of split gain).",
        lambda p: importance_chart(data.runs, data.models, p),
    )
    add(
        "ab_tests",
        AB_TESTS,
        "A/B tests: confidence sequences",
        "The band is the always-valid confidence sequence of treatment minus control net return "
        "per trade as trades closed, the line its estimate; after the 10% canary the treatment is "
        "promoted when the band clears 0 and rolled back when it falls below the dashed rollback "
        "line (−m; 0 by default); markers are the looks that moved the test.",
        lambda p: ab_chart(data.ab_tests, p),
    )
    return charts


def slug(text: str) -> str:
    """A file-name-safe stem for a component id (unique: a hash is added when it changed)."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:40] or "component"
    if safe == text:
        return safe
    return f"{safe}_{hashlib.sha256(text.encode()).hexdigest()[:8]}"


# -- plumbing ------------------------------------------------------------------------------------
@contextmanager
def _figure(rows: int, height_per_row: float, cols: int = 1, **kwargs: Any) -> Iterator[Figure]:
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(WIDTH, max(2.6, height_per_row * rows)), layout="constrained")
        figure.subplots(rows, cols, squeeze=False, **kwargs)
        yield figure


def _save(figure: Figure, path: Path) -> bool:
    import matplotlib

    with matplotlib.rc_context(STYLE):
        figure.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
    figure.clear()
    return True


def _axes(figure: Figure) -> list[Axes]:
    return list(figure.axes)


def _dates(ax: Axes) -> None:
    # matplotlib.dates has no type stubs: its two calls are the untyped ones of this module.
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator(minticks=4, maxticks=9)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def _x(days: Sequence[date]) -> NDArray[np.float64]:
    """Dates as matplotlib's day numbers (what its date locators and formatters read)."""
    from matplotlib.dates import date2num

    return np.asarray(date2num(list(days)), dtype=np.float64)  # type: ignore[no-untyped-call]


def _x1(day: date) -> float:
    return float(_x([day])[0])


def _percent(ax: Axes, decimals: int | None = None) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=decimals))


def _thousands(ax: Axes) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))


def _legend(ax: Axes, **kwargs: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    if unique:
        ax.legend(unique.values(), unique.keys(), **kwargs)


def _figure_legend(figure: Figure, ncols: int) -> None:
    """One legend for every panel, above them (the panels share their series and lines)."""
    unique: dict[str, Any] = {}
    for ax in figure.axes:
        handles, labels = ax.get_legend_handles_labels()
        for handle, label in zip(handles, labels, strict=True):
            unique.setdefault(label, handle)
    if unique:
        figure.legend(
            list(unique.values()),
            list(unique.keys()),
            loc="outside lower center",
            ncols=ncols,
            frameon=False,
        )


def _version_label(version: str | None) -> str:
    if version is None:
        return "v?"
    return version if version.lower().startswith("v") else f"v{version}"


def _wrap(text: str, width: int = 110) -> str:
    return "\n".join(textwrap.wrap(text, width)) if text else ""


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _to_date(value: Any) -> date:
    if hasattr(value, "date") and not isinstance(value, date):
        result = value.date()
        assert isinstance(result, date)
        return result
    assert isinstance(value, date)
    return value


def _shade_periods(ax: Axes, data: ReportData, component: str, metric: str | None) -> None:
    periods = data.periods
    if periods is None or periods.empty:
        return
    rows = periods[periods["component_id"] == component]
    if metric is not None:
        rows = rows[rows["metric"] == metric]
    for start, end in zip(rows["start_date"], rows["end_date"], strict=True):
        # A period's end day is underperforming too: shade through the end of it.
        ax.axvspan(
            _x1(_to_date(start)),
            _x1(_to_date(end) + timedelta(days=1)),
            color=SHADE,
            alpha=0.15,
            lw=0,
            label="underperforming period",
        )


# -- the charts ----------------------------------------------------------------------------------
def equity_chart(data: ReportData, path: Path) -> bool:
    equity = data.equity
    if equity is None or equity.empty:
        return False
    components = sorted(str(c) for c in equity["component_id"].unique())[:MAX_PANELS]
    with _figure(len(components), 2.4) as figure:
        for ax, cid in zip(_axes(figure), components, strict=True):
            rows = equity[equity["component_id"] == cid]
            days = [_to_date(d) for d in rows["date_day"]]
            ax.plot(
                _x(days), rows["equity_end"].to_numpy(float), color=BLUE, lw=1.6, label="equity"
            )
            first, last = days[0], days[-1]
            _shade_periods(ax, data, cid, None)
            marks = [m for m in data.version_marks if m.component_id == cid]
            seen: set[str | None] = set()
            for mark in sorted(marks, key=lambda m: m.first_date):
                if mark.variant == "treatment":
                    ax.axvspan(
                        _x1(mark.first_date),
                        _x1(mark.last_date + timedelta(days=1)),
                        color=SKY,
                        alpha=0.25,
                        hatch="//",
                        lw=0,
                        label=f"A/B treatment {_version_label(mark.strategy_version)} trading",
                    )
                if mark.strategy_version in seen:
                    continue
                if seen and first < mark.first_date <= last:
                    ax.axvline(
                        _x1(mark.first_date), color=BLACK, ls="--", lw=1.0, label="new version"
                    )
                    ax.annotate(
                        _version_label(mark.strategy_version),
                        (_x1(mark.first_date), 1.0),
                        xycoords=("data", "axes fraction"),
                        xytext=(3, -12),
                        textcoords="offset points",
                        fontsize=9,
                    )
                seen.add(mark.strategy_version)
            for test in data.ab_tests:
                start = test.data_start.date() if test.data_start else None
                if test.component_id != cid or start is None or not first <= start <= last:
                    continue
                ax.axvline(_x1(start), color=PURPLE, ls=":", lw=1.6, label="A/B test started")
                ax.annotate(
                    f"A/B v{test.treatment_version} vs v{test.control_version}",
                    (_x1(start), 0.0),
                    xycoords=("data", "axes fraction"),
                    xytext=(-4, 4),
                    textcoords="offset points",
                    ha="right",
                    fontsize=9,
                    color=PURPLE,
                )
            ax.set_title(cid, loc="left")
            ax.set_ylabel("equity")
            _thousands(ax)
            _dates(ax)
            _legend(ax, loc="upper left", frameon=False)
        return _save(figure, path)


def rolling_chart(data: ReportData, component: str, path: Path) -> bool:
    frame = data.rolling
    if frame is None:
        return False
    rows = frame[frame["component_id"] == component]
    metrics = [m for m in METRICS if m in set(rows["metric"])]
    if not metrics:
        return False
    windows = sorted(int(w) for w in rows["window_days"].unique())
    styles = {
        w: (BLUE if i == 0 else GREEN, "-" if i == 0 else "-.") for i, w in enumerate(windows)
    }
    with _figure(len(metrics), 2.1, sharex=True) as figure:
        for ax, metric in zip(_axes(figure), metrics, strict=True):
            _shade_periods(ax, data, component, metric)
            for window in windows:
                series = rows[(rows["metric"] == metric) & (rows["window_days"] == window)]
                if series.empty:
                    continue
                days = [_to_date(d) for d in series["date_day"]]
                values = series["value"].astype(float)
                enough = (series["status"] != "insufficient_data").to_numpy()
                colour, style = styles[window]
                ax.plot(
                    _x(days),
                    values.to_numpy(float),
                    color=colour,
                    ls=":",
                    lw=0.9,
                    alpha=0.6,
                    label="too little evidence",
                )
                ax.plot(
                    _x(days),
                    values.where(enough).to_numpy(float),
                    color=colour,
                    ls=style,
                    lw=1.6,
                    label=f"{window}-day window",
                )
            level = data.threshold(component, metric)
            if level.warning is not None:
                ax.axhline(level.warning, color=WARNING_COLOUR, ls="--", lw=1.2, label="warning")
            if level.critical is not None:
                ax.axhline(level.critical, color=CRITICAL_COLOUR, ls="-", lw=1.2, label="critical")
            if metric in PERCENT_METRICS:
                _percent(ax, 0)
            worse = "higher is worse" if level.direction == "lower_is_better" else "lower is worse"
            ax.set_title(f"{METRIC_LABELS.get(metric, metric)} ({worse})", loc="left", fontsize=10)
        _dates(_axes(figure)[-1])
        _figure_legend(figure, ncols=6)
        figure.suptitle(
            f"{component}: rolling metrics against the alert thresholds", x=0.01, ha="left"
        )
        return _save(figure, path)


def regime_chart(data: ReportData, path: Path) -> bool:

    frame = data.regimes
    if frame is None or frame.empty:
        return False
    present = set(frame["regime"])
    regimes = [r for r in REGIME_ORDER if r in present] + sorted(present - set(REGIME_ORDER))
    components = sorted(str(c) for c in frame["component_id"].unique())[:MAX_PANELS]
    x = np.arange(len(regimes))
    width = 0.8 / len(components)
    with _figure(1, 3.8, cols=2) as figure:
        win_ax, ret_ax = _axes(figure)
        cells: dict[tuple[str, str], dict[Any, Any]] = {
            (str(r["component_id"]), str(r["regime"])): r for r in frame.to_dict("records")
        }
        for i, cid in enumerate(components):
            colour = SERIES[i % len(SERIES)]
            offset = x - 0.4 + width * (i + 0.5)
            for ax, column in ((win_ax, "win_rate"), (ret_ax, "avg_trade_return")):
                for j, regime in enumerate(regimes):
                    cell = cells.get((cid, regime))
                    value = None if cell is None else _finite(cell[column])
                    if cell is None or value is None:
                        continue
                    thin = bool(cell["is_insufficient_data"])
                    ax.bar(
                        offset[j],
                        value,
                        width * 0.95,
                        color=colour,
                        alpha=0.45 if thin else 0.95,
                        hatch="///" if thin else None,
                        edgecolor=colour,
                    )
                    ax.annotate(
                        str(int(cell["n_trades"])),
                        (offset[j], value),
                        xytext=(0, 2 if value >= 0 else -10),
                        textcoords="offset points",
                        ha="center",
                        fontsize=8,
                    )
        win_ax.axhline(0.5, color=GREY, ls="--", lw=1)
        ret_ax.axhline(0.0, color=GREY, lw=1)
        for ax, title in ((win_ax, "win rate"), (ret_ax, "mean net return per trade")):
            ax.set_xticks(x, regimes, rotation=20)
            ax.set_title(title, loc="left")
            ax.grid(axis="x", visible=False)
        _percent(win_ax, 0)
        _percent(ret_ax, 2)
        from matplotlib.patches import Patch

        handles = [Patch(color=SERIES[i % len(SERIES)], label=c) for i, c in enumerate(components)]
        handles.append(
            Patch(facecolor="white", edgecolor=GREY, hatch="///", label="too few trades")
        )
        low, high = win_ax.get_ylim()
        win_ax.set_ylim(low, high * 1.35)  # headroom: the legend never covers a bar
        win_ax.legend(handles=handles, loc="upper right", frameon=False, ncols=2)
        figure.suptitle(
            f"By market regime at entry, last {data.regime_window} days (hatched: too few trades)",
            x=0.01,
            ha="left",
        )
        return _save(figure, path)


def gates_chart(runs: Sequence[RunInfo], path: Path) -> bool:

    gated = [r for r in runs if r.dsr is not None or r.pbo is not None][::-1]
    if not gated:
        return False
    labels = [
        f"{r.component_id}\n{r.started_at:%m-%d %H:%M}" if r.started_at else r.component_id
        for r in gated
    ]
    x = np.arange(len(gated))
    with _figure(1, 3.6, cols=2) as figure:
        dsr_ax, pbo_ax = _axes(figure)
        for ax, name in ((dsr_ax, "dsr"), (pbo_ax, "pbo")):
            for i, run in enumerate(gated):
                value = getattr(run, name)
                if value is None:
                    ax.annotate("n/a", (i, 0.02), ha="center", fontsize=8, color=GREY)
                    continue
                passed = value >= run.dsr_min if name == "dsr" else value <= run.pbo_max
                colour = BLUE if passed else VERMILLION
                ax.bar(
                    i,
                    value,
                    0.6,
                    color=colour,
                    hatch=None if passed else "xx",
                    edgecolor=colour,
                    alpha=0.9,
                    label="passes" if passed else "fails",
                )
                ax.annotate(
                    f"{value:.2f}",
                    (i, value),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    fontsize=8,
                )
            line = [r.dsr_min if name == "dsr" else r.pbo_max for r in gated]
            ax.hlines(line, x - 0.4, x + 0.4, colors=BLACK, linestyles="--", lw=1.2, label="gate")
            ax.set_xticks(x, labels, fontsize=8)
            ax.set_ylim(0, 1.3)  # headroom above the bars for the legend
            ax.grid(axis="x", visible=False)
            _legend(ax, loc="upper left", frameon=False, ncols=3)
        dsr_ax.set_title("deflated Sharpe ratio (must be ≥ gate)", loc="left")
        pbo_ax.set_title("probability of backtest overfitting (must be ≤ gate)", loc="left")
        return _save(figure, path)


def history_chart(runs: Sequence[RunInfo], path: Path) -> bool:

    searched = [r for r in runs if r.trials]
    if not searched:
        return False
    with _figure(len(searched), 2.5) as figure:
        for ax, run in zip(_axes(figure), searched, strict=True):
            done = [t for t in run.trials if t.state == "complete" and t.value is not None]
            if done:
                numbers = np.array([t.number for t in done])
                values = np.array([float(t.value or 0.0) for t in done])
                ax.scatter(numbers, values, s=18, color=BLUE, alpha=0.8, label="complete trial")
                ax.step(
                    numbers,
                    np.maximum.accumulate(values),
                    where="post",
                    color=BLACK,
                    lw=1.4,
                    label="best so far",
                )
            rug = ax.get_xaxis_transform()
            pruned = [t.number for t in run.trials if t.state == "pruned"]
            if pruned:
                ax.plot(
                    pruned,
                    [0.04] * len(pruned),
                    "|",
                    color=ORANGE,
                    ms=10,
                    mew=1.5,
                    transform=rug,
                    label="pruned",
                )
            infeasible = [t.number for t in run.trials if t.state == "infeasible"]
            if infeasible:
                ax.plot(
                    infeasible,
                    [0.04] * len(infeasible),
                    "x",
                    color=GREY,
                    ms=5,
                    transform=rug,
                    label="infeasible",
                )
            gates = ", ".join(
                f"{name} {value:.2f}"
                for name, value in (("DSR", run.dsr), ("PBO", run.pbo))
                if value is not None
            )
            ax.set_title(
                f"{run.component_id} · {run.run_id} · {run.verdict}"
                + (f" · {gates}" if gates else ""),
                loc="left",
                fontsize=10,
            )
            ax.set_ylabel(OBJECTIVE_LABELS.get(run.objective, run.objective))
            ax.margins(y=0.18)
            _legend(ax, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        _axes(figure)[-1].set_xlabel("trial number")
        return _save(figure, path)


def importance_chart(
    runs: Sequence[RunInfo], models: Sequence[ModelImportance], path: Path
) -> bool:
    panels: list[tuple[str, dict[str, float], str]] = []
    for run in runs:
        if run.importances:
            panels.append(
                (
                    f"{run.component_id} · {run.run_id}",
                    dict(run.importances),
                    "importance (PED-ANOVA)",
                )
            )
    for model in models:
        unit = (
            "log-loss increase when shuffled"
            if model.measure == "permutation"
            else "share of split gain"
        )
        panels.append(
            (
                f"model {model.model_id} v{model.version} ({model.status})",
                dict(model.features),
                unit,
            )
        )
    panels = panels[:MAX_PANELS]
    if not panels:
        return False
    heights = [max(1.2, 0.28 * len(values) + 0.7) for _, values, _ in panels]
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(WIDTH, sum(heights)), layout="constrained")
        axes = figure.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
        for ax, (title, values, unit), colour in zip(axes, panels, SERIES * 2, strict=False):
            ordered = sorted(values.items(), key=lambda kv: kv[1])
            ax.barh([k for k, _ in ordered], [v for _, v in ordered], color=colour, height=0.6)
            for k, v in ordered:
                text = f"{v:.2f}" if abs(v) >= 0.005 else f"{v:.1g}"
                ax.annotate(text, (v, k), xytext=(3, -3), textcoords="offset points", fontsize=8)
            ax.set_title(title, loc="left", fontsize=10)
            ax.set_xlabel(unit)
            ax.grid(axis="y", visible=False)
        return _save(figure, path)


def ab_chart(tests: Sequence[ABTestInfo], path: Path) -> bool:
    shown = list(tests)[:4]
    if not shown:
        return False
    with _figure(len(shown), 3.0) as figure:
        for ax, test in zip(_axes(figure), shown, strict=True):
            _ab_panel(ax, test)
        return _save(figure, path)


def _ab_panel(ax: Axes, test: ABTestInfo) -> None:
    status = test.status.replace("_", " ")
    stage = f" at {test.current_stage}%" if test.status == "running" else ""
    ax.set_title(f"{test.test_name}: {status}{stage}", loc="left")
    reason = _wrap(test.decision_reason or "", 120)
    if reason:
        ax.text(0.0, -0.32, reason, transform=ax.transAxes, fontsize=8.5, va="top", color="#333333")
    points = list(test.sequence)
    if not points:
        ax.text(
            0.5,
            0.5,
            "No trades in both arms yet: nothing to estimate.",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color=GREY,
        )
        ax.set_yticks([])
        ax.set_xticks([])
        return
    days = [p.day for p in points]
    bounded = [p for p in points if p.lower is not None and p.upper is not None]
    if bounded:
        ax.fill_between(
            _x([p.day for p in bounded]),
            [float(p.lower or 0.0) for p in bounded],
            [float(p.upper or 0.0) for p in bounded],
            step="post",
            color=SKY,
            alpha=0.35,
            lw=0,
            label=f"{100 * (1 - test.alpha):.0f}% confidence sequence",
        )
    ax.step(
        _x(days), [p.estimate for p in points], where="post", color=BLUE, lw=1.6, label="estimate"
    )
    ax.axhline(0.0, color=BLACK, lw=1.0)
    ax.axhline(-test.margin, color=ORANGE, ls="--", lw=1.3, label="−m (rollback line)")
    for look in test.looks:
        if look.day is None or look.estimate is None:
            continue
        colour = VERMILLION if look.event_type == "ab_test_rolled_back" else GREEN
        ax.plot(
            [_x1(look.day)],
            [look.estimate],
            "D",
            color=colour,
            ms=7,
            mec=BLACK,
            label="recorded look",
        )
        ax.annotate(
            LOOK_LABELS.get(look.event_type, look.event_type),
            (_x1(look.day), look.estimate),
            xytext=(-6, 8),
            textcoords="offset points",
            ha="right",
            fontsize=8.5,
        )
    ax.set_ylim(*_ab_limits(test))
    ax.set_ylabel("treatment − control\nreturn per trade")
    _percent(ax, 2)
    _dates(ax)
    last = points[-1]
    _legend(
        ax,
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
        title=f"{last.n_control} control, {last.n_treatment} treatment trades",
        title_fontsize=8.5,
        alignment="left",
    )


def _ab_limits(test: ABTestInfo) -> tuple[float, float]:
    """Show the part of the band that decides: after a quarter of the trades (the first looks'
    band is many times wider and would flatten the rest), with 0, −m and the recorded looks."""
    points = list(test.sequence)
    final = points[-1].n_control + points[-1].n_treatment
    late = [p for p in points if p.n_control + p.n_treatment >= final / 4] or points
    values = [0.0, -test.margin, *(p.estimate for p in points[len(points) // 4 :])]
    values += [v for p in late for v in (p.lower, p.upper) if v is not None]
    values += [v for look in test.looks for v in (look.lower, look.upper) if v is not None]
    low, high = min(values), max(values)
    pad = 0.12 * (high - low or abs(high) or 1e-4)
    return low - pad, high + pad
