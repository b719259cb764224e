"""Decision quality (statistics.md §5): on worlds whose truth is known, how often the engine
promotes noise, misses a real improvement, rolls back a good change, and how fast it rolls back a
bad one; every rate with its Wilson 95% interval.

Search worlds (OPTIMIZE): daily bars, 1,300 business days, a seed each.
  null   a geometric random walk (1% a day): no parameter set has an edge; the incumbent is
         sma_cross at its defaults (10/30). Any promotion is false.
  edge   trends that flip sign every 40 days (±0.4% a day under 1% noise): fast crosses ride them;
         the incumbent lags them (sma_cross 60/250, shorts allowed), as in tests/python/test_optimize.py.
  Each seed runs the engine's search as `runner optimize` does (runner.optimize.study: the
  StudySpec from the Settings defaults, SearchContext.build, create_study, objective_for, TPE
  seeded with the Wilcoxon pruner, collect) with Optuna's in-memory storage instead of SQLite
  (same seeded trials, benchmarks/backtest.py), then search.run_target's judgement:
  walkforward.holdout_returns of the best trial and of the incumbent and gates.evaluate_gates with
  the Settings' gate configuration. The peer ("promote the best in-sample trial", as Freqtrade's
  hyperopt or backtesting.py's optimize): promote when the best trial differs from the incumbent
  and beats its walk-forward score on the same folds.

A/B worlds (DEPLOY): per-trade net returns, i.i.d. normal (or Student t with 3 degrees of freedom,
--tails t3) with sd σ = 1% and mean 0.05σ for the incumbent; the candidate's mean differs by δ
(in σ). Signals arrive in batches (one `runner deploy` look per batch); each signal is routed by
runner.deploy.routing.assign (the engine's hash) at the stage's share and becomes one trade of its
arm. The design is rollout.design_for(Settings(), σ of the incumbent's last 500 trades, the
alert_thresholds seed's critical drawdown and win rate): α, N*, m, minimum trades, time box,
guardrails exactly as `runner deploy` fixes them. Each look builds abtest.Arms as rollout.gather
does (all trades since the test started, the stage's trades and assigned units, the treatment's
drawdown on 10% of capital per trade, win counts) and calls abtest.decide; the verdict moves the
state as Rollout._apply does (advance: 50%, new stage, counters reset; extend; pause; the rest end
the test). Trades per arm are counted as the sequential test counts them, n = (n_control +
n_treatment)/2 (signals / 2: the clock of an equal split); the treatment's own trades are shown too.

Pipeline (null worlds): a null seed whose search passed the gates goes on to an A/B test with
δ = 0 (its true difference); a false promotion end to end is both passing. The peer promotes
without a test.

    .venv/bin/python benchmarks/decision_quality.py --jobs 2 --log /tmp/dq.jsonl   # full, ~40 min
    .venv/bin/python benchmarks/decision_quality.py --from-log /tmp/dq.jsonl      # report a log
    .venv/bin/python benchmarks/decision_quality.py --quick         # a few seeds, < 1 min
    .venv/bin/python benchmarks/decision_quality.py --json /tmp/dq.json
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SIGMA = 0.01  # sd of a trade's net return
BASE_MEAN = 0.05  # the incumbent's expectancy, in σ
NOTIONAL = 0.10  # of capital per trade: the treatment's equity for the drawdown guardrail
CAPITAL = 100_000.0
SIGNALS_PER_DAY = 100  # the data clock of the stage time box
HISTORY_TRADES = 500  # the incumbent's trades σ is measured on (rollout._incumbent_sigma)
POWER_BUDGET = 2000  # trades per arm (statistics.md §5)
ROLLBACK_BUDGET = 600
DELTAS = (-0.2, 0.0, 0.05, 0.15)  # σ: the A/B worlds


# -- markets ------------------------------------------------------------------------------------
def _bars_frame(returns: np.ndarray, seed: int) -> pd.DataFrame:
    """Business-day OHLCV whose close-to-close returns are `returns` (tests/python/markets.py)."""
    rng = np.random.default_rng([seed, 1])
    close = 100.0 * np.cumprod(1.0 + returns)
    previous = np.r_[100.0, close[:-1]]
    open_ = previous * (1.0 + rng.normal(0.0, 0.002, len(returns)))
    spread = np.abs(rng.normal(0.0, 0.006, len(returns)))
    return pd.DataFrame(
        {
            "ts": pd.bdate_range("2012-01-02", periods=len(returns)),
            "open": open_,
            "high": np.maximum(open_, close) * (1.0 + spread),
            "low": np.minimum(open_, close) * (1.0 - spread),
            "close": close,
            "volume": 1000.0,
        }
    )


def null_market(seed: int, days: int = 1300) -> pd.DataFrame:
    return _bars_frame(np.random.default_rng([seed, 0]).normal(0.0, 0.01, days), seed)


def edge_market(
    seed: int, days: int = 1300, regime: int = 40, drift: float = 0.004
) -> pd.DataFrame:
    sign = np.where((np.arange(days) // regime) % 2 == 0, 1.0, -1.0)
    noise = np.random.default_rng([seed, 0]).normal(0.0, 0.01, days)
    return _bars_frame(sign * drift + noise, seed)


WORLDS: dict[str, tuple[Callable[[int], pd.DataFrame], dict[str, Any]]] = {
    "null": (null_market, {"fast": 10, "slow": 30}),
    "edge": (edge_market, {"fast": 60, "slow": 250, "allow_short": True}),
}


# -- search and gates ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchOutcome:
    world: str
    seed: int
    passed: bool
    peer_promotes: bool
    pbo: float | None
    dsr: float | None
    holdout_p: float | None
    n_trials: int
    n_clusters: int | None
    reasons: tuple[str, ...]
    seconds: float
    ab_action: str | None = None  # null worlds: the A/B test (δ = 0) of a candidate that passed


def run_search(world: str, seed: int, trials: int, batch: int = 50) -> SearchOutcome:
    import optuna
    from optuna.exceptions import ExperimentalWarning
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from runner.config import Settings
    from runner.optimize.gates import evaluate_gates
    from runner.optimize.search import _gate_config, same_params
    from runner.optimize.study import (
        PRUNE_P_THRESHOLD,
        SearchContext,
        StudySpec,
        collect,
        create_study,
        objective_for,
    )
    from runner.optimize.walkforward import evaluate, holdout_returns
    from runner.strategies import Bars, load_strategy

    started = time.perf_counter()
    settings = Settings()
    make, incumbent_overrides = WORLDS[world]
    bars = Bars.from_frame(make(seed), symbol=world.upper())
    defaults = {p.name: p.default for p in load_strategy("sma_cross").parameters()}
    incumbent = {**defaults, **incumbent_overrides}
    spec = StudySpec(
        study_name=f"tb-dq-{world}-{seed}",
        run_id=f"opt_dq_{world}_{seed}",
        component_id=world,
        strategy="sma_cross",
        symbol=world.upper(),
        fixed_params=incumbent,
        search=(),
        objective=settings.optimize_objective,
        periods_per_year=252,
        folds=settings.optimize_folds,
        holdout_fraction=settings.optimize_holdout_fraction,
        fees_bps=settings.optimize_fees_bps,
        slippage_bps=settings.optimize_slippage_bps,
        data_start=str(bars.time[0]),
        data_end=str(bars.time[-1]),
        n_trials=trials,
        seed=seed,
    )
    context = SearchContext.build(spec, bars)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    create_study(context, storage)  # type: ignore[arg-type]  # the spec and grid attributes
    # study.run_trials' sampler, pruner, objective and budget, on the in-memory storage.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        study = optuna.load_study(
            study_name=spec.study_name,
            storage=storage,
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.WilcoxonPruner(p_threshold=PRUNE_P_THRESHOLD),
        )
        study.optimize(
            objective_for(context),
            n_trials=trials,
            callbacks=[MaxTrialsCallback(trials, states=(TrialState.COMPLETE, TrialState.PRUNED))],
            catch=(ArithmeticError, ValueError),
            gc_after_trial=False,
        )
    result = collect(study)
    best = result.best_column
    best_params = dict(result.params[best])
    costs = context.costs
    _, cand_daily, _ = holdout_returns(
        context.strategy, bars, best_params, context.plan, costs, 252
    )
    _, inc_daily, _ = holdout_returns(context.strategy, bars, incumbent, context.plan, costs, 252)
    same = same_params(best_params, incumbent)
    report = evaluate_gates(
        trial_returns=result.returns,
        best_column=best,
        n_trials=result.n_complete + result.n_pruned,
        holdout_candidate=cand_daily,
        holdout_incumbent=inc_daily,
        same_as_incumbent=same,
        config=_gate_config(settings),
    )
    incumbent_score = evaluate(
        context.strategy, bars, incumbent, context.plan, costs, spec.objective, 252
    ).score
    values = report.values
    return SearchOutcome(
        world=world,
        seed=seed,
        passed=report.passed,
        peer_promotes=not same and float(result.values[best]) > incumbent_score,
        pbo=values.get("pbo"),
        dsr=values.get("dsr"),
        holdout_p=values.get("holdout_p"),
        n_trials=result.n_complete + result.n_pruned,
        n_clusters=values.get("pbo_clusters"),
        reasons=report.reasons,
        seconds=time.perf_counter() - started,
        # End to end: a null candidate that passed the gates meets its true δ = 0 in an A/B test.
        ab_action=(
            run_ab(0.0, 100_000 + seed, batch).action if report.passed and world == "null" else None
        ),
    )


# -- the A/B ramp -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ABOutcome:
    delta: float
    seed: int
    action: str  # promote | rollback | inconclusive (or pause: a false sample-ratio alarm)
    n_per_arm: float  # (n_control + n_treatment) / 2 when the test ended
    n_treatment: int
    stage: int
    looks: int
    reason: str
    tails: str = "normal"


def _seed_thresholds() -> tuple[Any, Any]:
    """The default rows of the alert_thresholds seed (what runner.thresholds reads from it)."""
    from runner.thresholds import DEFAULTS, Threshold

    rows = {
        r["metric"]: r
        for r in csv.DictReader((ROOT / "seeds" / "alert_thresholds.csv").open())
        if not r["component_id"]
    }

    def read(metric: str) -> Threshold:
        row = rows.get(metric)
        if row is None:
            return Threshold(DEFAULTS.get((metric, "critical_value")), None)
        return Threshold(float(row["critical_value"]), int(row["min_trades"] or 0) or None)

    return read("max_drawdown"), read("win_rate")


def run_ab(delta: float, seed: int, batch: int, tails: str = "normal") -> ABOutcome:
    from runner.config import Settings
    from runner.deploy.abtest import Arms, decide, drawdown
    from runner.deploy.rollout import design_for
    from runner.deploy.routing import assign

    rng = np.random.default_rng([seed, round(delta * 1000) + 10_000, len(tails)])

    def draw(n: int) -> np.ndarray:
        if tails == "t3":  # unit variance: t with ν degrees of freedom has variance ν/(ν − 2)
            return rng.standard_t(3, n) / math.sqrt(3.0)
        return rng.standard_normal(n)

    history = BASE_MEAN * SIGMA + SIGMA * draw(HISTORY_TRADES)
    sigma = float(history.std(ddof=1))  # rollout._incumbent_sigma
    drawdown_limit, win_rate = _seed_thresholds()
    design = design_for(Settings(), sigma, drawdown_limit, win_rate)
    test_id = f"ab_dq_{seed}_{delta:+.3f}_{tails}"

    control: list[float] = []
    treatment: list[float] = []
    stage, extended, previous_p = 10, False, None
    stage_control = stage_treatment = stage_signals = 0
    signal = looks = 0
    while True:
        share = stage / 100.0
        noise = draw(batch)
        for k in range(batch):
            arm = assign(test_id, f"sig{signal}", share)
            signal += 1
            ret = (BASE_MEAN + (delta if arm == "treatment" else 0.0)) * SIGMA + SIGMA * noise[k]
            if arm == "treatment":
                treatment.append(ret)
                stage_treatment += 1
            else:
                control.append(ret)
                stage_control += 1
        stage_signals += batch
        c, t = np.asarray(control), np.asarray(treatment)
        arms = Arms(
            control=c,
            treatment=t,
            stage_control=stage_control,
            stage_treatment=stage_treatment,
            assigned_control=stage_control,  # one signal, one assigned unit, one trade
            assigned_treatment=stage_treatment,
            treatment_drawdown=drawdown(t * NOTIONAL * CAPITAL, CAPITAL),
            treatment_win_rate=float(np.mean(t > 0)) if len(t) else None,
            control_win_rate=float(np.mean(c > 0)) if len(c) else None,
            treatment_wins=(int(np.sum(t > 0)), int(np.sum(t != 0))),
            control_wins=(int(np.sum(c > 0)), int(np.sum(c != 0))),
        )
        verdict = decide(
            arms,
            design,
            stage=stage,
            stage_elapsed_days=stage_signals / SIGNALS_PER_DAY,
            extended=extended,
            paused=False,
            previous_p=previous_p,
        )
        looks += 1
        previous_p = verdict.look.p_value if verdict.look.p_value is not None else previous_p
        action = verdict.action
        if action == "advance":  # Rollout._apply: a new stage at 50%, its own counts
            stage, extended = 50, False
            stage_control = stage_treatment = stage_signals = 0
        elif action == "extend":
            extended = True
        # A pause waits for a person (only a guardrail moves it): the simulation ends there.
        if action in ("promote", "rollback", "inconclusive", "pause"):
            return ABOutcome(
                delta,
                seed,
                action,
                (len(c) + len(t)) / 2.0,
                len(t),
                stage,
                looks,
                verdict.reason,
                tails,
            )


# -- rates ----------------------------------------------------------------------------------------
def rate(k: int, n: int) -> dict[str, Any]:
    from runner.stats import wilson_interval

    low, high = wilson_interval(k, n)
    return {"k": k, "n": n, "rate": k / n if n else None, "low": low, "high": high}


def fmt_rate(r: dict[str, Any]) -> str:
    if not r["n"]:
        return "n/a"
    return f"{r['rate']:6.1%} [{r['low']:.1%}, {r['high']:.1%}]  ({r['k']}/{r['n']})"


def ab_rates(outcomes: Sequence[ABOutcome]) -> dict[str, Any]:
    by = {d: [o for o in outcomes if o.delta == d] for d in sorted({o.delta for o in outcomes})}
    out: dict[str, Any] = {}
    for d, group in by.items():
        n = len(group)
        promoted = [o for o in group if o.action == "promote"]
        rolled = [o for o in group if o.action == "rollback"]
        # Censored at infinity: a test that never rolled back counts above any budget.
        times = sorted(o.n_per_arm if o.action == "rollback" else math.inf for o in group)
        treated = sorted(o.n_treatment if o.action == "rollback" else math.inf for o in group)
        out[f"{d:+.2f}"] = {
            "seeds": n,
            "promote": rate(len(promoted), n),
            "promote_within_budget": rate(
                sum(1 for o in promoted if o.n_per_arm <= POWER_BUDGET), n
            ),
            "rollback": rate(len(rolled), n),
            "rollback_within_budget": rate(
                sum(1 for o in rolled if o.n_per_arm <= ROLLBACK_BUDGET), n
            ),
            "inconclusive": rate(sum(1 for o in group if o.action == "inconclusive"), n),
            "pause": rate(sum(1 for o in group if o.action == "pause"), n),
            "median_rollback_per_arm": _finite(times[(n - 1) // 2]) if n else None,
            "median_rollback_treatment": _finite(treated[(n - 1) // 2]) if n else None,
            "median_promote_per_arm": (
                float(np.median([o.n_per_arm for o in promoted])) if promoted else None
            ),
            "median_looks": float(np.median([o.looks for o in group])) if group else None,
        }
    return out


def _finite(x: float) -> float | None:
    return None if math.isinf(x) else float(x)


def search_rates(outcomes: Sequence[SearchOutcome], pipeline_promoted: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for world in WORLDS:
        group = [o for o in outcomes if o.world == world]
        n = len(group)
        pbos = [o.pbo for o in group if o.pbo is not None]
        out[world] = {
            "seeds": n,
            "gates_pass": rate(sum(o.passed for o in group), n),
            "peer_promotes": rate(sum(o.peer_promotes for o in group), n),
            "pbo_mean": float(np.mean(pbos)) if pbos else None,
            "pbo_median": float(np.median(pbos)) if pbos else None,
            "pbo_iqr": [float(np.quantile(pbos, 0.25)), float(np.quantile(pbos, 0.75))]
            if pbos
            else None,
            "pbo_defined": len(pbos),
            "median_seconds": float(np.median([o.seconds for o in group])) if group else None,
        }
    n_null = out["null"]["seeds"]
    out["null"]["pipeline_false_promotion"] = rate(pipeline_promoted, n_null)
    return out


# -- driver ---------------------------------------------------------------------------------------
Task = tuple[str, Any, int, int, str]  # kind, world or δ, seed, trials or batch, tails
Outcome = SearchOutcome | ABOutcome


def _work(task: Task) -> Outcome:
    kind, what, seed, size, tails = task
    if kind == "search":
        return run_search(str(what), seed, size)
    return run_ab(float(what), seed, size, tails)


def _map(tasks: list[Task], jobs: int, log: Path | None) -> list[Outcome]:
    """Run the tasks (in `jobs` processes), appending each outcome to `log` as it finishes, so
    that an interrupted run can still be reported (--from-log)."""
    from concurrent.futures import ProcessPoolExecutor

    done: list[Outcome] = []
    pool = ProcessPoolExecutor(jobs) if jobs > 1 else None
    results = pool.map(_work, tasks) if pool is not None else map(_work, tasks)
    with log.open("a") if log is not None else open("/dev/null", "w") as out:
        for outcome in results:
            done.append(outcome)
            kind = "search" if isinstance(outcome, SearchOutcome) else "ab"
            out.write(json.dumps({"kind": kind, **asdict(outcome)}) + "\n")
            out.flush()
    if pool is not None:
        pool.shutdown()
    return done


def _key(o: Outcome) -> tuple[str, str, int, str]:
    if isinstance(o, SearchOutcome):
        return ("search", o.world, o.seed, "")
    return ("ab", str(o.delta), o.seed, o.tails)


def _read_log(path: Path) -> list[Outcome]:
    out: list[Outcome] = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        kind = row.pop("kind")
        if kind == "search":
            out.append(SearchOutcome(**{**row, "reasons": tuple(row["reasons"])}))
        else:
            out.append(ABOutcome(**row))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    tasks: list[Task] = []
    last = max(args.search_seeds, args.edge_seeds, args.ab_seeds)
    for seed in range(last):  # seed by seed: a partial log covers every world evenly
        if args.only in (None, "search"):
            tasks += [("search", "null", seed, args.trials, "")] * (seed < args.search_seeds)
            tasks += [("search", "edge", seed, args.trials, "")] * (seed < args.edge_seeds)
        if args.only in (None, "ab"):
            tasks += [("ab", d, seed, args.batch, args.tails) for d in DELTAS] * (
                seed < args.ab_seeds
            )
    if args.from_log:
        done = _read_log(args.from_log)
    else:
        # Resume: outcomes already in the log are kept, their tasks not run again.
        done = _read_log(args.log) if args.log is not None and args.log.exists() else []
        have = {_key(o) for o in done}
        todo = [t for t in tasks if (t[0], str(t[1]), t[2], t[4]) not in have]
        done += _map(todo, args.jobs, args.log)
        wanted = {(t[0], str(t[1]), t[2], t[4]) for t in tasks}
        done = [o for o in done if _key(o) in wanted]
    searches = [o for o in done if isinstance(o, SearchOutcome)]
    tests = [o for o in done if isinstance(o, ABOutcome)]
    if args.verbose:
        for o in searches:
            print(
                f"{o.world} seed {o.seed}: passed={o.passed} peer={o.peer_promotes} pbo={o.pbo} "
                f"dsr={o.dsr} ({o.seconds:.1f} s)",
                file=sys.stderr,
            )
    from runner.config import Settings

    s = Settings()
    return {
        "command": " ".join(sys.argv),
        "machine": {"cpus": _cpus(), "python": platform.python_version(), "cpu": _cpu_model()},
        "config": {
            "search_seeds": args.search_seeds,
            "edge_seeds": args.edge_seeds,
            "ab_seeds": args.ab_seeds,
            "trials": args.trials,
            "batch": args.batch,
            "tails": args.tails,
            "jobs": args.jobs,
            "deploy_alpha": s.deploy_alpha,
            "deploy_planned_n": s.deploy_planned_n,
            "deploy_margin_sigma": s.deploy_margin_sigma,
            "deploy_min_trades_per_arm": s.deploy_min_trades_per_arm,
            "optimize_dsr_min": s.optimize_dsr_min,
            "optimize_pbo_max": s.optimize_pbo_max,
            "optimize_alpha": s.optimize_alpha,
        },
        "search": search_rates(searches, sum(1 for o in searches if o.ab_action == "promote")),
        "ab": ab_rates(tests),
        "search_runs": [{k: v for k, v in asdict(o).items() if k != "reasons"} for o in searches],
        "seconds": {
            "total": time.perf_counter() - started,
            "search_cpu": sum(o.seconds for o in searches),
        },
    }


def report(result: dict[str, Any]) -> None:
    search, ab = result["search"], result["ab"]
    null, edge = search["null"], search["edge"]
    print(f"Search worlds ({result['config']['trials']} trials a search, engine gates)")
    print(f"  null  seeds {null['seeds']}")
    print(f"    false promotion, gates then A/B:   {fmt_rate(null['pipeline_false_promotion'])}")
    print(f"    false promotion, gates alone:      {fmt_rate(null['gates_pass'])}")
    print(f"    peer: promote the best in-sample:  {fmt_rate(null['peer_promotes'])}")
    print(f"    PBO (clusters): mean {_num(null['pbo_mean'])}, median {_num(null['pbo_median'])}")
    print(f"  edge  seeds {edge['seeds']}")
    print(f"    gates pass (a real edge found):    {fmt_rate(edge['gates_pass'])}")
    print(f"    peer promotes:                     {fmt_rate(edge['peer_promotes'])}")
    print(f"    PBO (clusters): mean {_num(edge['pbo_mean'])}, median {_num(edge['pbo_median'])}")
    print(
        f"A/B ramp 10% → 50% → 100% ({result['config']['ab_seeds']} seeds a world, "
        f"{result['config']['tails']} returns, a look every {result['config']['batch']} signals)"
    )
    for key, r in ab.items():
        print(f"  δ = {key}σ")
        print(f"    promote:                           {fmt_rate(r['promote'])}")
        print(
            f"    promote within {POWER_BUDGET} per arm:       {fmt_rate(r['promote_within_budget'])}"
        )
        print(f"    rollback:                          {fmt_rate(r['rollback'])}")
        print(
            f"    rollback within {ROLLBACK_BUDGET} per arm:       {fmt_rate(r['rollback_within_budget'])}"
        )
        print(f"    inconclusive:                      {fmt_rate(r['inconclusive'])}")
        print(
            f"    median per arm at rollback {_num(r['median_rollback_per_arm'])} "
            f"(treatment {_num(r['median_rollback_treatment'])}), at promotion "
            f"{_num(r['median_promote_per_arm'])}"
        )
    print("Targets (statistics.md §5)")
    for name, ok in targets(result).items():
        print(f"  {'n/a ' if ok is None else 'met ' if ok else 'MISS'} {name}")
    sec = result["seconds"]
    print(
        f"{sec['total']:.0f} s ({result['config']['jobs']} jobs; searches {sec['search_cpu']:.0f} s)"
    )


def targets(result: dict[str, Any]) -> dict[str, bool | None]:
    """Each target of statistics.md §5: met, missed, or None when its section did not run."""
    search, ab = result["search"], result["ab"]
    null, edge = search["null"], search["edge"]

    def ab_value(key: str, *path: str) -> Any:
        value: Any = ab.get(key)
        for step in path:
            value = None if value is None else value[step]
        return value

    pipeline = null["pipeline_false_promotion"]["high"] if null["seeds"] else None
    alone = ab_value("+0.00", "promote", "high")
    power = ab_value("+0.15", "promote_within_budget", "rate")
    false_rb = [ab_value(k, "rollback", "high") for k in ("+0.00", "+0.05")]
    median_rb = ab_value("-0.20", "median_rollback_per_arm")
    null_pbo, edge_pbo = null["pbo_mean"], edge["pbo_mean"]
    return {
        "false promotion (pipeline) ≤ 5%, upper bound": None if pipeline is None else pipeline <= 0.05,
        "false promotion (A/B alone, δ = 0) ≤ 5%, upper bound": None if alone is None else alone <= 0.05,
        "power ≥ 80% at +0.15σ within 2,000 per arm": None if power is None else power >= 0.8,
        "false rollback ≤ 2% (δ = 0, +0.05σ), upper bound": None if None in false_rb else max(false_rb) <= 0.02,
        "−0.2σ rolled back within a median of 600 per arm": None if "-0.20" not in ab else median_rb is not None and median_rb <= ROLLBACK_BUDGET,
        "PBO ≈ 0.5 in null worlds (0.35–0.65)": None if null_pbo is None else 0.35 <= null_pbo <= 0.65,
        "PBO ≤ 0.1 with a planted edge": None if edge_pbo is None else edge_pbo <= 0.1,
    }  # fmt: skip


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a few seeds (the test suite's run)")
    parser.add_argument("--search-seeds", type=int, default=None, help="seeds per search world")
    parser.add_argument("--edge-seeds", type=int, default=None, help="seeds of the edge world")
    parser.add_argument("--log", type=Path, default=None, help="append each outcome here (JSONL)")
    parser.add_argument("--from-log", type=Path, default=None, help="report a --log, run nothing")
    parser.add_argument("--ab-seeds", type=int, default=None, help="seeds per A/B world")
    parser.add_argument(
        "--trials", type=int, default=None, help="trials a search (default: Settings)"
    )
    parser.add_argument("--batch", type=int, default=50, help="signals between two looks")
    parser.add_argument("--tails", choices=("normal", "t3"), default="normal")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--only", choices=("search", "ab"), default=None)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    from runner.config import Settings

    quick = args.quick
    args.search_seeds = args.search_seeds or (3 if quick else 100)
    args.edge_seeds = args.edge_seeds or (3 if quick else max(1, args.search_seeds // 2))
    args.ab_seeds = args.ab_seeds or (12 if quick else 500)
    args.trials = args.trials or (30 if quick else Settings().optimize_trials)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    result = run(args)
    report(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
