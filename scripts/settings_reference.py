"""Write docs/configuration.md from the Settings class, the one place configuration comes from.

    .venv/bin/python scripts/settings_reference.py        # rewrite the page
    .venv/bin/python scripts/settings_reference.py --check  # exit 1 when the page is stale

A test runs `--check`, so a new setting without its line in the page fails the suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import AliasChoices

from runner.config import Settings

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
INTRO = """# Configuration

Every setting of the engine, generated from `runner/config.py` by
`scripts/settings_reference.py` (a test keeps this page in step with the code).

Each setting is an environment variable; a `.env` file is not read, so export them or put them
in the scheduler's secrets. The declarative parts of the configuration are dbt seeds and
variables, edited as files: components (`seeds/components.csv`), alert thresholds
(`seeds/alert_thresholds.csv`), recommendation rules (`seeds/recommendation_rules.csv`),
component models (`seeds/component_models.csv`), declared tasks
(`seeds/optimization_tasks.csv`), and the analysis windows (`vars:` in `dbt_project.yml`).
Secrets (`DATABASE_URL`'s password, `DISCORD_WEBHOOK_URL`, a storage URL) are masked wherever
they could be printed.

| variable | default | meaning |
|---|---|---|
"""


def variable(name: str) -> str:
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"TRADEBASE_{name.upper()}"


def render() -> str:
    lines = []
    for name, spec in Settings.model_fields.items():
        default = "unset" if spec.default is None else f"`{spec.default}`"
        lines.append(f"| `{variable(name)}` | {default} | {spec.description or ''} |")
    return INTRO + "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    page = render()
    if "--check" in argv:
        if not PAGE.is_file() or PAGE.read_text() != page:
            print(f"{PAGE} is stale: run scripts/settings_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
