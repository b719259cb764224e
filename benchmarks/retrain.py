"""Retraining at scale: seconds and peak memory of runner.optimize.retrain.retrain() on 1M rows ×
30 features (LightGBM on 2 threads), against LightGBM's plain lgb.train on the same rows.

Data: minute bars (seeded), 30 standard-normal features of which three carry a weak planted
signal (label = 1{0.3·f0 − 0.2·f1 + 0.1·f2 + N(0, 1) > 0}, an out-of-sample AUC near 0.6, about
what a real edge looks like), labels over 5 bars. Each path runs in its own fresh process (spawn)
so max RSS is per path; "data" is the RSS after the frame is built, before the path starts:
  retrain    the whole path: 5 outer purged walk-forward folds, each early-stopped on a purged
             tail; the gate (moving-block bootstrap of the log-loss difference and of the AUC,
             1,000 replicates each); the final early-stopped fit and its refit on every row
  lgb.train  one plain lgb.train on all rows with the final model's params and number of rounds
             (what a single fit costs; the ratio says what purging, folds and the gate add)
The gate alone is timed again on the retrain's out-of-sample rows.

    .venv/bin/python benchmarks/retrain.py                      # 1M × 30, ~10 minutes
    .venv/bin/python benchmarks/retrain.py --rows 100000        # a quick look
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def make_frame(rows: int, features: int, seed: int = 7) -> Any:
    # Both paths load the same libraries before the data, so "data" RSS compares.
    import lightgbm  # noqa: F401
    import numpy as np

    import runner.optimize.retrain  # noqa: F401
    from runner.optimize.features import FeatureFrame

    rng = np.random.default_rng(seed)
    t0 = np.datetime64("2020-01-01T00:00", "us") + np.arange(rows) * np.timedelta64(1, "m")
    X = rng.standard_normal((rows, features))
    latent = 0.3 * X[:, 0] - 0.2 * X[:, 1] + 0.1 * X[:, 2] + rng.standard_normal(rows)
    horizon = 5
    return FeatureFrame.build(
        symbol="BENCH",
        t0=t0,
        t1=t0 + horizon * np.timedelta64(1, "m"),
        X=X,
        feature_names=[f"f_{j:02d}" for j in range(features)],
        y=(latent > 0).astype(float),
        horizon_bars=horizon,
    )


def run_retrain(rows: int, features: int, threads: int, bootstrap: int) -> dict[str, Any]:
    from runner.optimize.retrain import RetrainConfig, evaluate_gate, retrain

    frame = make_frame(rows, features)
    data_gib = _peak_gib()
    config = RetrainConfig(
        window=None, num_threads=threads, bootstrap_samples=bootstrap, min_train=100
    )
    clock = time.perf_counter()
    result = retrain(frame, config=config)
    seconds = time.perf_counter() - clock
    clock = time.perf_counter()
    evaluate_gate(
        frame.y[result.oos],
        result.oos_proba,
        result.oos_baseline_proba,
        baseline=result.gate.baseline,
        config=config,
        horizon=result.horizon_bars,
    )
    gate_seconds = time.perf_counter() - clock
    return {
        "seconds": seconds,
        "gate_seconds": gate_seconds,
        "data_gib": data_gib,
        "peak_gib": _peak_gib(),
        "rounds": result.num_boost_round,
        "fold_rounds": [fold.best_iteration for fold in result.folds],
        "params": dict(result.params),
        "auc": result.metrics.auc,
        "log_loss": result.metrics.log_loss,
        "calibration_error": result.metrics.calibration_error,
        "passed": result.gate.passed,
        "oos_rows": result.metrics.n,
    }


def run_reference(rows: int, features: int, params: dict[str, Any], rounds: int) -> dict[str, Any]:
    import lightgbm as lgb

    frame = make_frame(rows, features)
    data_gib = _peak_gib()
    clock = time.perf_counter()
    dataset = lgb.Dataset(
        frame.X, frame.y, params={"max_bin": params.get("max_bin", 255), "verbosity": -1}
    )
    lgb.train(params, dataset, num_boost_round=rounds)
    return {"seconds": time.perf_counter() - clock, "data_gib": data_gib, "peak_gib": _peak_gib()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()

    spawn = get_context("spawn")
    with spawn.Pool(1, maxtasksperchild=1) as pool:
        ours = pool.apply(run_retrain, (args.rows, args.features, args.threads, args.bootstrap))
    with spawn.Pool(1, maxtasksperchild=1) as pool:
        reference = pool.apply(
            run_reference, (args.rows, args.features, ours["params"], ours["rounds"])
        )

    print(f"{args.rows:,} rows × {args.features} features, LightGBM on {args.threads} threads")
    print(
        f"  out of sample: {ours['oos_rows']:,} rows, AUC {ours['auc']:.3f}, log loss "
        f"{ours['log_loss']:.4f}, calibration error {ours['calibration_error']:.4f}, "
        f"gate {'passed' if ours['passed'] else 'rejected'}"
    )
    print(f"  rounds: folds {ours['fold_rounds']}, final {ours['rounds']}")
    print(f"  {'path':<12}{'seconds':>10}{'peak GiB':>10}{'data GiB':>10}")
    print(
        f"  {'retrain':<12}{ours['seconds']:>10.1f}{ours['peak_gib']:>10.2f}{ours['data_gib']:>10.2f}"
    )
    print(
        f"  {'lgb.train':<12}{reference['seconds']:>10.1f}{reference['peak_gib']:>10.2f}"
        f"{reference['data_gib']:>10.2f}"
    )
    print(f"  gate alone (bootstrap {args.bootstrap} × 2): {ours['gate_seconds']:.1f} s")
    print(
        f"  ratio retrain / lgb.train: {ours['seconds'] / reference['seconds']:.1f}× time, "
        f"{(ours['peak_gib'] - ours['data_gib']) / max(reference['peak_gib'] - reference['data_gib'], 1e-9):.1f}× "
        "memory above the data"
    )


if __name__ == "__main__":
    main()
