"""A wrong setting in the environment is one line naming the variable and what is wrong with it,
never a validation dump; the value is not repeated (it may be a secret)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.config import load_settings
from runner.errors import ConfigError


def test_the_error_names_each_wrong_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEBASE_CYCLE_FULL_REFRESH_HOURS", "-1")
    monkeypatch.setenv("TRADEBASE_OPTIMIZE_TRIALS", "many-s3cret")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert (
        "TRADEBASE_CYCLE_FULL_REFRESH_HOURS: Input should be greater than or equal to 0" in message
    )
    assert "TRADEBASE_OPTIMIZE_TRIALS" in message and "many-s3cret" not in message


def test_the_cli_says_it_in_one_line_and_exits_1(tmp_path: Path) -> None:
    env = {**os.environ, "TRADEBASE_CYCLE_FULL_REFRESH_HOURS": "-1"}
    done = subprocess.run(
        [sys.executable, "-m", "runner.cli", "status"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "Unexpected error" not in done.stderr
    assert "TRADEBASE_CYCLE_FULL_REFRESH_HOURS" in " ".join(done.stderr.split())
