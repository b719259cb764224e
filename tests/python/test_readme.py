"""The README, followed as a new user would: its component line, its trade columns, its commands
and its Python API block, run as written on a copy of the project (DuckDB).

The trades are the README's two example rows plus a month of a hand-made day-trading history
whose last two weeks lose: the walkthrough promises alerts and recommendations from exactly this.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.python.conftest import PROJECT_DIR

pytestmark = pytest.mark.integration

README = (PROJECT_DIR / "README.md").read_text()
PROJECT_ENTRIES = ("dbt_project.yml", "profiles.yml", "models", "macros", "seeds", "tests/dbt")


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def dedent_block(block: str) -> str:
    lines = block.splitlines()
    indent = min(len(x) - len(x.lstrip()) for x in lines if x.strip())
    return "\n".join(x[indent:] for x in lines) + "\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readme") / "tradebase"
    for entry in PROJECT_ENTRIES:
        source = PROJECT_DIR / entry
        if source.is_dir():
            shutil.copytree(source, root / entry)
        else:
            root.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / entry)
    walkthrough = section("Your own trades in five minutes")
    [components, trades] = [dedent_block(b) for b in blocks(walkthrough, "csv")]
    header, line = components.strip().splitlines()
    seed = root / "seeds" / "components.csv"
    assert seed.read_text().splitlines()[0] == header  # the README shows the seed's real header
    with seed.open("a") as handle:
        handle.write(line + "\n")
    (root / "my_trades.csv").write_text(trades + "".join(_history(trades.splitlines()[0])))
    return root


def _history(header: str) -> list[str]:
    """A month of one-contract ES day trades after the README's two rows, losing at the end."""
    rng = np.random.default_rng(3)
    rows, day, price = [], datetime(2026, 10, 5), 5000.0
    columns = header.split(",")
    n = 0
    while day <= datetime(2026, 10, 23):
        if day.weekday() < 5:
            for hour in (14, 17):
                n += 1
                late = day >= datetime(2026, 10, 12)
                move = rng.normal(-4.0 if late else 3.0, 6.0)
                side = "long" if n % 3 else "short"
                exit_price = price + (move if side == "long" else -move)
                values = {
                    "trade_id": f"h{n}",
                    "component_id": "my_es_trend",
                    "symbol": "ES",
                    "side": side,
                    "quantity": "1",
                    "entry_ts": f"{day:%Y-%m-%d}T{hour}:30:00Z",
                    "exit_ts": f"{day:%Y-%m-%d}T{hour + 2}:00:00Z",
                    "entry_price": f"{price:.2f}",
                    "exit_price": f"{exit_price:.2f}",
                    "fees": "2.5",
                }
                rows.append(",".join(values[c] for c in columns) + "\n")
                price = exit_price
        day += timedelta(days=1)
    return rows


def _runner(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "COLUMNS": "200"}
    env.pop("DATABASE_URL", None)
    env.pop("TRADEBASE_DUCKDB_PATH", None)
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_walkthrough_loads_the_trades_and_gives_alerts_and_recommendations(
    project: Path,
) -> None:
    walkthrough = section("Your own trades in five minutes")
    assert "runner ingest trades my_trades.csv" in walkthrough
    loaded = _runner(project, "ingest", "trades", "my_trades.csv")
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    with (project / "my_trades.csv").open() as handle:
        n = sum(1 for _ in csv.DictReader(handle))
    assert f"{n} inserted" in loaded.stdout or str(n) in loaded.stdout, loaded.stdout

    as_of = re.search(r"runner analyze --as-of (\S+)`", walkthrough)
    assert as_of is not None
    analyzed = _runner(project, "analyze", "--as-of", as_of.group(1))
    assert analyzed.returncode == 0, analyzed.stdout + analyzed.stderr
    out = analyzed.stdout
    assert "my_es_trend" in out
    assert "critical" in out.lower() and "hyperparameter" in out.lower(), out

    status = _runner(project, "status", "--json")
    assert status.returncode == 0 and "my_es_trend" in status.stdout


def test_the_python_api_block_runs_as_written(project: Path) -> None:
    [code] = blocks(section("Python API"), "python")
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "my_es_trend" in done.stdout
    assert (project / "report" / "report.html").is_file()
