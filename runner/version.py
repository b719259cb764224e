"""The code version recorded with every run: the package version, plus the git commit when the
project is a checkout (so a run can be traced to the exact code that made its decision)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from runner import __version__


def code_version(project: Path | None = None) -> str:
    where = project or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}" if commit else __version__
