"""The rollout state machine: stage a candidate, smoke-test it, ramp its A/B test, promote it or
roll it back. Every move is one transaction that re-reads the state under the component's lock,
so a crash between moves is resumed by the next run, never repeated or skipped.

States of a staging deployment (deployments.status):

    smoke_testing ──fail──▶ failed
         │ pass
         ▼
    ab_testing (10% ─▶ 50%) ──▶ promoted | rolled_back | inconclusive | aborted

Promotion makes a new active production deployment for the treatment version and supersedes the
old one; rollback returns all traffic to the production version. Both move strategy_versions'
statuses and write their events in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from runner.audit import AuditTrail, Event
from runner.config import Settings
from runner.deploy import state
from runner.deploy.abtest import Arms, Design, Verdict, decide, drawdown
from runner.engine_tables import ABTest
from runner.errors import ConfigError
from runner.optimize import models, versions
from runner.optimize.probabilities import needs_probability
from runner.optimize.versions import Component, StrategyVersion
from runner.strategies import load_strategy
from runner.thresholds import Threshold, threshold
from runner.warehouse import Warehouse, connect, session_lock
from runner.warehouse.migrations import migrate

PRIMARY_METRIC = "net_return_per_trade"
RANDOMISATION_UNIT = "signal"
MIN_TRADES_FOR_SIGMA = 30


@dataclass(frozen=True)
class StepResult:
    """What one `runner deploy` did for one component, in words and ids."""

    component_id: str
    action: str  # nothing | staged | smoke_failed | test_started | hold | advance | promote | ...
    summary: str
    deployment_id: str | None = None
    test_id: str | None = None
    version: int | None = None
    stage: int | None = None
    statistics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RollbackResult:
    deployment_id: str
    component_id: str
    rolled_back: bool  # False: it had already ended; nothing changed
    summary: str
    restored_version: int | None = None


# -- locking ------------------------------------------------------------------------------------
def component_lease(wh: Warehouse, component_id: str) -> AbstractContextManager[bool]:
    """Hold the component for this runner (False when another runner holds it)."""
    return session_lock(wh, f"tb:deploy:{wh.schema}:{component_id}")


def _data_now(wh: Warehouse, component: Component, fallback: datetime) -> datetime:
    """The data clock: the newest bar of the component's symbol, else its newest trade exit."""
    row = wh.fetchone("select max(ts) from raw_bars where symbol = %(s)s", {"s": component.symbol})
    if row is None or row[0] is None:
        row = wh.fetchone(
            "select max(exit_ts) from raw_trades where component_id = %(c)s",
            {"c": component.component_id},
        )
    value = row[0] if row and row[0] is not None else fallback.replace(tzinfo=None)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=None)


# -- the trades an A/B test sees ----------------------------------------------------------------
@dataclass(frozen=True)
class _Trades:
    returns: np.ndarray
    pnl: np.ndarray
    entry: np.ndarray


def _arm_trades(wh: Warehouse, test: ABTest, arm: str, version: str) -> _Trades:
    rows = wh.fetchall(
        "select side, quantity, entry_price, exit_price, fees, entry_ts from raw_trades"
        " where component_id = %(c)s and variant = %(a)s and strategy_version = %(v)s"
        " and entry_ts > %(start)s order by exit_ts, trade_id",
        {"c": test.component_id, "a": arm, "v": version, "start": test.data_start},
    )
    if not rows:
        empty = np.array([], dtype=np.float64)
        return _Trades(empty, empty, np.array([], dtype="datetime64[us]"))
    side = np.array([1.0 if r[0] == "long" else -1.0 for r in rows])
    qty, entry, exit_, fees = (np.array([float(r[i]) for r in rows]) for i in (1, 2, 3, 4))
    pnl = side * (exit_ - entry) * qty - fees
    return _Trades(
        pnl / (entry * qty),
        pnl,
        np.array([r[5] for r in rows], dtype="datetime64[us]"),
    )


def _win_rate(returns: np.ndarray) -> float | None:
    decided = returns[returns != 0]  # break-evens excluded, as the marts count them
    return float(np.mean(decided > 0)) if len(decided) else None


def _assigned(wh: Warehouse, test: ABTest) -> tuple[int | None, int | None]:
    rows = wh.fetchall(
        "select arm, count(*) from ab_assignments where test_id = %(t)s and stage = %(s)s"
        " group by arm",
        {"t": test.test_id, "s": test.current_stage},
    )
    if not rows:
        return None, None
    counts = {str(r[0]): int(r[1]) for r in rows}
    return counts.get("control", 0), counts.get("treatment", 0)


def gather(wh: Warehouse, test: ABTest, capital: float) -> Arms:
    control = _arm_trades(wh, test, "control", test.control_version)
    treatment = _arm_trades(wh, test, "treatment", test.treatment_version)
    stage_start = np.datetime64(test.stage_data_start or test.data_start, "us")
    assigned_c, assigned_t = _assigned(wh, test)
    return Arms(
        control=control.returns,
        treatment=treatment.returns,
        stage_control=int(np.sum(control.entry > stage_start)),
        stage_treatment=int(np.sum(treatment.entry > stage_start)),
        assigned_control=assigned_c,
        assigned_treatment=assigned_t,
        treatment_drawdown=drawdown(treatment.pnl, capital),
        treatment_win_rate=_win_rate(treatment.returns),
        control_win_rate=_win_rate(control.returns),
        treatment_wins=(
            int(np.sum(treatment.returns > 0)),
            int(np.sum(treatment.returns != 0)),
        ),
        control_wins=(int(np.sum(control.returns > 0)), int(np.sum(control.returns != 0))),
    )


def test_id_for(
    component_id: str, control: int, treatment: int, data_start: datetime, wh: Warehouse
) -> str:
    """A reproducible id: the test's id salts the routing hash, so the same rollout on the same
    data splits the same units (a demo tells the same story; a test suite is deterministic).
    The count of the component's earlier tests keeps a retest of the same pair distinct."""
    earlier = len(state.tests(wh, component_id))
    key = f"{component_id}\x1f{control}\x1f{treatment}\x1f{data_start.isoformat()}\x1f{earlier}"
    return f"ab_{data_start:%Y%m%dT%H%M%S}_{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def design_of(test: ABTest) -> Design:
    guard = json.loads(test.guardrails or "{}")
    return Design(
        alpha=test.alpha,
        planned_n=test.planned_n,
        margin=test.margin,
        min_n_per_arm=int(test.min_n_per_arm or 30),
        stage_days=float(test.stage_days or guard.get("stage_days", 30.0)),
        critical_drawdown=float(guard.get("critical_drawdown", 0.15)),
        critical_win_rate=guard.get("critical_win_rate"),
        win_rate_min_trades=int(guard.get("win_rate_min_trades", 20)),
        srm_alpha=float(guard.get("srm_alpha", 0.001)),
    )


def _incumbent_sigma(wh: Warehouse, component_id: str, version: int) -> float | None:
    """The spread of the incumbent's net return per trade (its last 500 trades)."""
    rows = wh.fetchall(
        "select side, quantity, entry_price, exit_price, fees from raw_trades"
        " where component_id = %(c)s and (strategy_version = %(v)s or strategy_version is null)"
        " order by exit_ts desc limit 500",
        {"c": component_id, "v": str(version)},
    )
    if len(rows) < MIN_TRADES_FOR_SIGMA:
        return None
    returns = np.array(
        [
            ((1.0 if r[0] == "long" else -1.0) * (r[3] - r[2]) * r[1] - r[4]) / (r[2] * r[1])
            for r in rows
        ]
    )
    sigma = float(returns.std(ddof=1))
    return sigma if sigma > 0 and math.isfinite(sigma) else None


def new_design(
    wh: Warehouse,
    settings: Settings,
    component: Component,
    incumbent: int,
    backtest_sigma: float | None,
) -> tuple[Design, float]:
    """The design fixed at the start: m = margin_sigma × σ of the incumbent's trade returns (its
    live trades, else the smoke backtest's, else 1%)."""
    sigma = _incumbent_sigma(wh, component.component_id, incumbent) or backtest_sigma or 0.01
    drawdown_limit = threshold(wh, component.component_id, "max_drawdown", "critical_value")
    win_rate = threshold(wh, component.component_id, "win_rate", "critical_value")
    return design_for(settings, sigma, drawdown_limit, win_rate), sigma


def design_for(
    settings: Settings, sigma: float, drawdown_limit: Threshold, win_rate: Threshold
) -> Design:
    """The design from the settings, the incumbent's σ and its critical thresholds (pure: the
    decision-quality benchmark builds its tests with it, so it measures the engine's design)."""
    return Design(
        alpha=settings.deploy_alpha,
        planned_n=settings.deploy_planned_n,
        margin=settings.deploy_margin_sigma * sigma,
        min_n_per_arm=settings.deploy_min_trades_per_arm,
        stage_days=settings.deploy_stage_days,
        critical_drawdown=drawdown_limit.value if drawdown_limit.value is not None else 0.15,
        critical_win_rate=win_rate.value,
        win_rate_min_trades=win_rate.min_trades or 20,
        srm_alpha=settings.deploy_srm_alpha,
    )


# -- the engine ---------------------------------------------------------------------------------
class Rollout:
    """The moves of the rollout state machine on one warehouse connection."""

    def __init__(self, wh: Warehouse, settings: Settings, trail: AuditTrail) -> None:
        self.wh = wh
        self.settings = settings
        self.trail = trail

    # -- entry point ----------------------------------------------------------------------------
    def preview(self, component: Component, version: int | None = None) -> StepResult:
        """What `step` would do now, decided the same way, with nothing written."""
        now = datetime.now(UTC)
        cid = component.component_id
        test = state.running_test(self.wh, cid)
        if test is not None:
            arms = gather(self.wh, test, component.initial_capital)
            data_now = _data_now(self.wh, component, now)
            start = test.stage_data_start or test.data_start or data_now
            verdict = decide(
                arms,
                design_of(test),
                stage=test.current_stage,
                stage_elapsed_days=(data_now - start).total_seconds() / 86400.0,
                extended=test.stage_extended,
                paused=test.paused,
                previous_p=test.always_valid_p,
            )
            return StepResult(
                cid,
                verdict.action,
                f"(dry run) {verdict.reason}",
                test.deployment_id,
                test.test_id,
                int(test.treatment_version),
                test.current_stage,
                verdict.look.to_dict(),
            )
        interrupted = state.deployments(self.wh, cid, ("smoke_testing",))
        if interrupted:
            return StepResult(
                cid,
                "resume",
                f"(dry run) would rerun the interrupted smoke tests of version "
                f"{interrupted[-1].version}.",
                interrupted[-1].deployment_id,
                version=interrupted[-1].version,
            )
        candidate = (
            self._candidate(cid, version) if self.wh.table_exists("strategy_versions") else None
        )
        if candidate is None:
            return StepResult(cid, "nothing", "(dry run) no candidate version waits.")
        return StepResult(
            cid,
            "stage",
            f"(dry run) would stage candidate version {candidate.version} and smoke-test it.",
            version=candidate.version,
        )

    def step(
        self, component: Component, version: int | None = None, now: datetime | None = None
    ) -> StepResult:
        """Move the component's rollout one step: evaluate its running test, else resume an
        interrupted smoke test, else stage and smoke-test the newest candidate."""
        now = now or datetime.now(UTC)
        wh, cid = self.wh, component.component_id
        with wh.transaction():
            state.lock(wh, cid)
            self.trail.record(versions.seed_versions(wh, [component]))
            production = versions.production_version(wh, cid)
            _, created = state.ensure_production(
                wh, cid, production.version, _policy(component), now
            )
            if created:
                self._events(
                    [
                        Event(
                            "deployment_created",
                            f"Version {production.version} of {cid} is in production with all "
                            "traffic.",
                            {"version": production.version, "environment": "production"},
                            component_id=cid,
                        )
                    ],
                    now,
                )
        test = state.running_test(wh, cid)
        if test is not None:
            if version is not None and str(version) != test.treatment_version:
                raise ConfigError(
                    f"{cid} is already testing version {test.treatment_version} ({test.test_id});"
                    " finish or roll it back before deploying another."
                )
            return self.evaluate(component, test, now)
        interrupted = state.deployments(wh, cid, ("smoke_testing",))
        if interrupted:
            deployment = interrupted[-1]
            with wh.transaction():
                state.lock(wh, cid)
                self._events(
                    [
                        Event(
                            "deployment_resumed",
                            f"The run that staged version {deployment.version} stopped before its "
                            "smoke tests were recorded; running them again.",
                            {"version": deployment.version},
                            component_id=cid,
                            deployment_id=deployment.deployment_id,
                        )
                    ],
                    now,
                )
            return self.smoke(component, deployment, now)
        if version is None:
            self._adopt_model_candidate(component, production, now)
        candidate = self._candidate(cid, version)
        if candidate is None:
            return StepResult(cid, "nothing", "No candidate version waits for deployment.")
        deployment = self.stage(component, candidate, production.version, now)
        return self.smoke(component, deployment, now)

    def _adopt_model_candidate(
        self, component: Component, production: StrategyVersion, now: datetime
    ) -> None:
        """A model-driven component whose model has a candidate newer than the one production
        trades gets a strategy candidate trading it: the model reaches production only through
        its own A/B test, as part of a strategy version."""
        if not needs_probability(load_strategy(production.strategy)):
            return
        cid = component.component_id
        model_id = models.model_of(self.wh, cid)
        current = int(production.params.get("model_version", 0))
        newer = [
            m
            for m in models.list_versions(self.wh, model_id)
            if m.status == "candidate" and m.version > current
        ]
        taken = {
            int(v.params.get("model_version", 0)) for v in versions.list_versions(self.wh, cid)
        }
        fresh = [m for m in newer if m.version not in taken]
        if not fresh:
            return
        model = fresh[-1]
        with self.wh.transaction():
            state.lock(self.wh, cid)
            added = versions.add_candidate(
                self.wh,
                cid,
                production.strategy,
                {**production.params, "model_version": model.version},
                parent_version=production.version,
                run_id=model.optimization_run_id,
                note=f"trades model {model_id} v{model.version}",
            )
            self._events(
                [
                    Event(
                        "strategy_version_created",
                        f"Model {model_id} version {model.version} passed its gate; version "
                        f"{added.version} of {cid} trades it and goes through DEPLOY.",
                        {
                            "version": added.version,
                            "model_id": model_id,
                            "model_version": model.version,
                        },
                        component_id=cid,
                    )
                ],
                now,
            )

    def _model_statuses(self, component_id: str, promoted: int, retired: int | None) -> None:
        """Keep model_versions in step with the strategy versions that trade them."""
        strategy = versions.get_version(self.wh, component_id, promoted)
        if not needs_probability(load_strategy(strategy.strategy)):
            return
        model_id = models.model_of(self.wh, component_id)
        new = int(strategy.params["model_version"])
        for m in models.list_versions(self.wh, model_id):
            if m.status == "production" and m.version != new:
                models.set_status(self.wh, model_id, m.version, "retired")
        models.set_status(self.wh, model_id, new, "production")

    def _retire_model(self, component_id: str, version: int) -> None:
        """The model a failed strategy version traded is not offered again."""
        strategy = versions.get_version(self.wh, component_id, version)
        if not needs_probability(load_strategy(strategy.strategy)):
            return
        model_id = models.model_of(self.wh, component_id)
        number = int(strategy.params["model_version"])
        if models.get_version(self.wh, model_id, number).status == "candidate":
            models.set_status(self.wh, model_id, number, "retired")

    def _candidate(self, component_id: str, version: int | None) -> StrategyVersion | None:
        if version is not None:
            chosen = versions.get_version(self.wh, component_id, version)
            if chosen.status != "candidate":
                raise ConfigError(
                    f"Version {version} of {component_id} is {chosen.status}, not a candidate; "
                    "only candidates are deployed."
                )
            return chosen
        waiting = [
            v for v in versions.list_versions(self.wh, component_id) if v.status == "candidate"
        ]
        return waiting[-1] if waiting else None

    # -- staging and smoke tests ----------------------------------------------------------------
    def stage(
        self, component: Component, candidate: StrategyVersion, incumbent: int, now: datetime
    ) -> state.Deployment:
        deployment = state.Deployment(
            deployment_id=state.new_id("dep", now),
            component_id=component.component_id,
            version=candidate.version,
            environment="staging",
            status="smoke_testing",
            traffic_share=0.0,
            test_id=None,
            previous_version=incumbent,
            open_position_policy=_policy(component),
            created_at=now,
            updated_at=now,
            ended_at=None,
            reason=f"candidate version {candidate.version} staged beside production v{incumbent}",
        )
        with self.wh.transaction():
            state.lock(self.wh, component.component_id)
            versions.set_status(
                self.wh,
                component.component_id,
                candidate.version,
                "staging",
                f"staged in {deployment.deployment_id}",
            )
            state.insert_deployment(self.wh, deployment)
            self._events(
                [
                    Event(
                        "deployment_staged",
                        f"Candidate version {candidate.version} of {component.component_id} is in "
                        f"staging beside production version {incumbent}; smoke tests next.",
                        {"version": candidate.version, "incumbent_version": incumbent},
                        component_id=component.component_id,
                        deployment_id=deployment.deployment_id,
                    )
                ],
                now,
            )
        return deployment

    def smoke(
        self, component: Component, deployment: state.Deployment, now: datetime
    ) -> StepResult:
        from runner.deploy.smoke import run_smoke_tests

        cid = component.component_id
        candidate = versions.get_version(self.wh, cid, deployment.version)
        checks = run_smoke_tests(
            self.wh,
            self.settings,
            component,
            candidate,
            recent_days=self.settings.deploy_smoke_days,
        )
        failed = [c for c in checks if not c.passed]
        with self.wh.transaction():
            state.lock(self.wh, cid)
            if state.get_deployment(self.wh, deployment.deployment_id).status != "smoke_testing":
                current = state.get_deployment(self.wh, deployment.deployment_id)
                return StepResult(
                    cid,
                    "nothing",
                    f"Deployment {deployment.deployment_id} moved on meanwhile ({current.status}).",
                    deployment.deployment_id,
                )
            state.write_checks(self.wh, deployment.deployment_id, checks, now)
            metrics = {c.name: {"passed": c.passed, "detail": c.detail} for c in checks}
            if failed:
                reason = "Smoke tests failed: " + " ".join(f"{c.name}: {c.detail}" for c in failed)
                state.update_deployment(
                    self.wh,
                    deployment.deployment_id,
                    now,
                    status="failed",
                    ended_at=now,
                    reason=reason,
                )
                versions.set_status(self.wh, cid, deployment.version, "retired", reason[:500])
                self._retire_model(cid, deployment.version)
                self._events(
                    [
                        Event(
                            "smoke_tests_failed",
                            f"Version {deployment.version} of {cid} failed "
                            f"{len(failed)} of {len(checks)} smoke tests; no A/B test starts. "
                            + reason,
                            metrics,
                            component_id=cid,
                            deployment_id=deployment.deployment_id,
                        )
                    ],
                    now,
                )
                return StepResult(
                    cid,
                    "smoke_failed",
                    reason,
                    deployment.deployment_id,
                    version=deployment.version,
                )
            test = self._start_test(component, deployment, checks, now)
            self._events(
                [
                    Event(
                        "smoke_tests_passed",
                        f"Version {deployment.version} of {cid} passed all {len(checks)} smoke "
                        "tests.",
                        metrics,
                        component_id=cid,
                        deployment_id=deployment.deployment_id,
                    ),
                    Event(
                        "ab_test_started",
                        f"A/B test {test.test_id}: version {test.treatment_version} gets 10% of "
                        f"{cid}'s signals against production version {test.control_version}.",
                        {
                            "alpha": test.alpha,
                            "planned_n": test.planned_n,
                            "margin": test.margin,
                            "min_n_per_arm": test.min_n_per_arm,
                            "primary_metric": test.primary_metric,
                            "randomisation_unit": test.randomisation_unit,
                            "guardrails": json.loads(test.guardrails),
                        },
                        component_id=cid,
                        deployment_id=deployment.deployment_id,
                        test_id=test.test_id,
                    ),
                ],
                now,
            )
        return StepResult(
            cid,
            "test_started",
            f"Smoke tests passed; A/B test {test.test_id} started at 10%.",
            deployment.deployment_id,
            test.test_id,
            deployment.version,
            10,
        )

    def _start_test(
        self,
        component: Component,
        deployment: state.Deployment,
        checks: Sequence[state.Check],
        now: datetime,
    ) -> ABTest:
        cid = component.component_id
        backtest = next((c for c in checks if c.name == "recent_backtest"), None)
        sigma_hint = None
        if backtest is not None:
            value = backtest.metrics.get("trade_return_sd")
            sigma_hint = float(value) if isinstance(value, int | float) and value > 0 else None
        incumbent = deployment.previous_version or versions.production_version(self.wh, cid).version
        design, sigma = new_design(self.wh, self.settings, component, incumbent, sigma_hint)
        data_now = _data_now(self.wh, component, now)
        test = ABTest(
            test_id=test_id_for(cid, incumbent, deployment.version, data_now, self.wh),
            test_name=f"{cid} v{deployment.version} vs v{incumbent}",
            component_id=cid,
            control_version=str(incumbent),
            treatment_version=str(deployment.version),
            alpha=design.alpha,
            planned_n=design.planned_n,
            margin=design.margin,
            primary_metric=PRIMARY_METRIC,
            randomisation_unit=RANDOMISATION_UNIT,
            started_at=now,
            deployment_id=deployment.deployment_id,
            data_start=data_now,
            stage_data_start=data_now,
            stage_started_at=now,
            stage_days=design.stage_days,
            min_n_per_arm=design.min_n_per_arm,
            guardrails=json.dumps(
                {
                    **design.guardrails(),
                    "sigma": sigma,
                    "margin_sigma": self.settings.deploy_margin_sigma,
                },
                sort_keys=True,
            ),
        )
        state.insert_test(self.wh, test, now)
        state.update_deployment(
            self.wh,
            deployment.deployment_id,
            now,
            status="ab_testing",
            traffic_share=0.10,
            test_id=test.test_id,
        )
        return test

    # -- the A/B test ---------------------------------------------------------------------------
    def evaluate(self, component: Component, test: ABTest, now: datetime) -> StepResult:
        cid = component.component_id
        design = design_of(test)
        arms = gather(self.wh, test, component.initial_capital)
        data_now = _data_now(self.wh, component, now)
        stage_start = test.stage_data_start or test.data_start or data_now
        elapsed = (data_now - stage_start).total_seconds() / 86400.0
        verdict = decide(
            arms,
            design,
            stage=test.current_stage,
            stage_elapsed_days=elapsed,
            extended=test.stage_extended,
            paused=test.paused,
            previous_p=test.always_valid_p,
        )
        with self.wh.transaction():
            state.lock(self.wh, cid)
            current = state.get_test(self.wh, test.test_id)
            if current.status != "running" or current.look_count != test.look_count:
                return StepResult(
                    cid,
                    "nothing",
                    f"A/B test {test.test_id} moved on meanwhile ({current.status}).",
                    test.deployment_id,
                    test.test_id,
                )
            self._record_look(test, verdict, now)
            self._apply(component, test, verdict, data_now, now)
        look = verdict.look
        return StepResult(
            cid,
            verdict.action,
            verdict.reason,
            test.deployment_id,
            test.test_id,
            int(test.treatment_version),
            {"advance": 50, "promote": 100}.get(verdict.action, test.current_stage),
            look.to_dict(),
        )

    def _record_look(self, test: ABTest, verdict: Verdict, now: datetime) -> None:
        look = verdict.look
        state.update_test(
            self.wh,
            test.test_id,
            now,
            n_control=look.n_control,
            n_treatment=look.n_treatment,
            estimate=look.estimate,
            cs_lower=look.lower,
            cs_upper=look.upper,
            always_valid_p=look.p_value,
            srm_p=look.srm_p,
            improvement_percent=look.improvement_percent,
            look_count=test.look_count + 1,
            decision_reason=verdict.reason,
        )

    def _apply(
        self,
        component: Component,
        test: ABTest,
        verdict: Verdict,
        data_now: datetime,
        now: datetime,
    ) -> None:
        cid = component.component_id
        deployment_id = test.deployment_id
        assert deployment_id is not None
        stats = verdict.look.to_dict()

        def event(kind: str, extra: dict[str, Any] | None = None) -> Event:
            return Event(
                kind,
                verdict.reason,
                {**stats, "stage": test.current_stage, **(extra or {})},
                component_id=cid,
                deployment_id=deployment_id,
                test_id=test.test_id,
            )

        if verdict.action == "advance":
            state.update_test(
                self.wh,
                test.test_id,
                now,
                current_stage=50,
                stage_data_start=data_now,
                stage_started_at=now,
                stage_extended=False,
            )
            state.update_deployment(self.wh, deployment_id, now, traffic_share=0.5)
            self._events([event("ab_stage_advanced", {"to_stage": 50})], now)
        elif verdict.action == "promote":
            self._promote(component, test, now)
            self._events([event("ab_test_promoted", {"to_stage": 100})], now)
        elif verdict.action == "rollback":
            self._roll_back(cid, test, verdict.reason, now)
            self._events([event("ab_test_rolled_back", {"automatic": True})], now)
        elif verdict.action == "extend":
            state.update_test(self.wh, test.test_id, now, stage_extended=True)
            self._events([event("ab_stage_extended")], now)
        elif verdict.action == "inconclusive":
            self._end(cid, test, "inconclusive", "retired", verdict.reason, now)
            self._events([event("ab_test_inconclusive")], now)
        elif verdict.action == "pause":
            if not test.paused:
                state.update_test(self.wh, test.test_id, now, paused=True)
                self._events([event("ab_test_paused")], now)

    def _promote(self, component: Component, test: ABTest, now: datetime) -> None:
        cid = component.component_id
        assert test.deployment_id is not None
        old = state.production(self.wh, cid)
        treatment = int(test.treatment_version)
        state.update_test(
            self.wh, test.test_id, now, status="promoted", current_stage=100, ended_at=now
        )
        state.update_deployment(
            self.wh,
            test.deployment_id,
            now,
            status="promoted",
            traffic_share=1.0,
            ended_at=now,
            reason=f"promoted by A/B test {test.test_id}",
        )
        if old is not None:
            state.update_deployment(
                self.wh,
                old.deployment_id,
                now,
                status="superseded",
                traffic_share=0.0,
                ended_at=now,
                reason=f"superseded by version {treatment} ({test.test_id})",
            )
            versions.set_status(
                self.wh, cid, old.version, "superseded", f"superseded by v{treatment}"
            )
        state.insert_deployment(
            self.wh,
            state.Deployment(
                deployment_id=state.new_id("dep", now),
                component_id=cid,
                version=treatment,
                environment="production",
                status="active",
                traffic_share=1.0,
                test_id=test.test_id,
                previous_version=None if old is None else old.version,
                open_position_policy=_policy(component),
                created_at=now,
                updated_at=now,
                ended_at=None,
                reason=f"promoted by A/B test {test.test_id}",
            ),
        )
        versions.set_status(self.wh, cid, treatment, "production", f"promoted by {test.test_id}")
        self._model_statuses(cid, treatment, None if old is None else old.version)

    def _end(
        self,
        component_id: str,
        test: ABTest,
        status: str,
        version_status: versions.VersionStatus,
        reason: str,
        now: datetime,
    ) -> None:
        assert test.deployment_id is not None
        state.update_test(self.wh, test.test_id, now, status=status, ended_at=now)
        state.update_deployment(
            self.wh,
            test.deployment_id,
            now,
            status=status,
            traffic_share=0.0,
            ended_at=now,
            reason=reason[:1000],
        )
        versions.set_status(
            self.wh, component_id, int(test.treatment_version), version_status, reason[:500]
        )
        self._retire_model(component_id, int(test.treatment_version))

    def _roll_back(self, component_id: str, test: ABTest, reason: str, now: datetime) -> None:
        self._end(component_id, test, "rolled_back", "rolled_back", reason, now)

    # -- manual rollback ------------------------------------------------------------------------
    def rollback(
        self, deployment_id: str, reason: str, now: datetime | None = None
    ) -> RollbackResult:
        """All traffic back to the previous production version in one transaction; the test (if
        any) ends rolled_back. A deployment that already ended is left as it is."""
        now = now or datetime.now(UTC)
        deployment = state.get_deployment(self.wh, deployment_id)
        cid = deployment.component_id
        with self.wh.transaction():
            state.lock(self.wh, cid)
            deployment = state.get_deployment(self.wh, deployment_id)
            why = reason or "manual rollback"
            if deployment.environment == "staging" and deployment.status in (
                "smoke_testing",
                "ab_testing",
            ):
                test = (
                    state.get_test(self.wh, deployment.test_id)
                    if deployment.test_id is not None
                    else None
                )
                if test is not None and test.status == "running":
                    self._roll_back(cid, test, why, now)
                else:
                    self._mark_rolled_back(deployment, why, now)
                    self._retire_model(cid, deployment.version)
                restored = deployment.previous_version
                self._events(
                    [
                        Event(
                            "deployment_rolled_back",
                            f"Version {deployment.version} of {cid} rolled back by hand: {why}. "
                            f"All traffic is back on version {restored}.",
                            {
                                "version": deployment.version,
                                "restored_version": restored,
                                "automatic": False,
                            },
                            component_id=cid,
                            deployment_id=deployment_id,
                            test_id=deployment.test_id,
                        )
                    ],
                    now,
                )
                return RollbackResult(
                    deployment_id,
                    cid,
                    True,
                    f"Rolled back; version {restored} has all traffic.",
                    restored,
                )
            if (
                deployment.environment == "production"
                and deployment.status == "active"
                and deployment.previous_version is not None
            ):
                restored = deployment.previous_version
                self._mark_rolled_back(deployment, why, now)
                versions.set_status(self.wh, cid, restored, "production", f"restored: {why}"[:500])
                self._model_statuses(cid, restored, deployment.version)
                state.insert_deployment(
                    self.wh,
                    state.Deployment(
                        deployment_id=state.new_id("dep", now),
                        component_id=cid,
                        version=restored,
                        environment="production",
                        status="active",
                        traffic_share=1.0,
                        test_id=None,
                        previous_version=deployment.version,
                        open_position_policy=deployment.open_position_policy,
                        created_at=now,
                        updated_at=now,
                        ended_at=None,
                        reason=f"restored by rolling back {deployment_id}: {why}",
                    ),
                )
                self._events(
                    [
                        Event(
                            "deployment_rolled_back",
                            f"Production version {deployment.version} of {cid} rolled back by "
                            f"hand: {why}. Version {restored} is in production again.",
                            {
                                "version": deployment.version,
                                "restored_version": restored,
                                "automatic": False,
                            },
                            component_id=cid,
                            deployment_id=deployment_id,
                        )
                    ],
                    now,
                )
                return RollbackResult(
                    deployment_id,
                    cid,
                    True,
                    f"Rolled back; version {restored} is in production again.",
                    restored,
                )
        return RollbackResult(
            deployment_id,
            cid,
            False,
            f"Deployment {deployment_id} is {deployment.status}: nothing to roll back.",
        )

    def _mark_rolled_back(self, deployment: state.Deployment, why: str, now: datetime) -> None:
        """The deployment ends rolled back, with no traffic, and so does its version."""
        state.update_deployment(
            self.wh,
            deployment.deployment_id,
            now,
            status="rolled_back",
            traffic_share=0.0,
            ended_at=now,
            reason=why,
        )
        versions.set_status(
            self.wh, deployment.component_id, deployment.version, "rolled_back", why[:500]
        )

    def _events(self, events: Sequence[Event], now: datetime) -> None:
        # Stamped when written, not with the step's `now`: events of successive moves in one
        # step must sort in the order they happened (ids order only within one batch).
        del now
        self.trail.record(events)


def _policy(component: Component) -> state.Policy:
    policy = component.open_position_policy
    return policy if policy in state.POLICIES else "finish"  # type: ignore[return-value]


# -- the commands' entry points -----------------------------------------------------------------
def deploy(
    settings: Settings,
    *,
    component: str | None = None,
    version: int | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> list[StepResult]:
    """One step of every component's rollout (or the one named): the hourly `runner deploy`.
    `dry_run` decides the same way and writes nothing."""
    if version is not None and component is None:
        raise ConfigError("--version needs --component: a version number belongs to a component.")
    results: list[StepResult] = []
    with connect(settings) as wh:
        migrate(wh)
        trail = AuditTrail(wh, secrets=settings.secrets())
        rollout = Rollout(wh, settings, trail)
        chosen = [c for c in versions.read_components(wh, component) if c.strategy and c.symbol]
        for item in chosen:
            if dry_run:
                results.append(rollout.preview(item, version))
                continue
            with component_lease(wh, item.component_id) as held:
                if not held:
                    results.append(
                        StepResult(
                            item.component_id,
                            "busy",
                            "Another runner is deploying this component; skipped.",
                        )
                    )
                    continue
                results.append(rollout.step(item, version, now))
    return results


def rollback(
    settings: Settings, deployment_id: str, reason: str = "", now: datetime | None = None
) -> RollbackResult:
    with connect(settings) as wh:
        migrate(wh)
        trail = AuditTrail(wh, secrets=settings.secrets())
        return Rollout(wh, settings, trail).rollback(deployment_id, reason, now)
