"""The one module that runs dbt: in-process through dbtRunner, one invocation at a time.

It passes the project, profiles and target explicitly, puts the warehouse settings into the
environment the committed profiles.yml reads, and turns failures into one redacted message.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from runner.config import Settings
from runner.errors import DbtFailed
from runner.redact import redact

# dbtRunner is not safe to call twice at once in one process.
_DBT_LOCK = threading.Lock()


@dataclass(frozen=True)
class NodeResult:
    name: str
    resource_type: str
    status: str
    message: str


def dbt_env(settings: Settings) -> dict[str, str]:
    """The environment profiles.yml reads for the configured warehouse."""
    env = {
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "TRADEBASE_SCHEMA": settings.schema,
        "TRADEBASE_DUCKDB_PATH": str(settings.duckdb_file),
        "DATABASE_URL": "",
    }
    if settings.database_url is not None:
        env["DATABASE_URL"] = settings.database_url.get_secret_value()
        # dbt scrubs DBT_ENV_SECRET_* values from its logs and errors.
        env["DBT_ENV_SECRET_PG_PASSWORD"] = settings.postgres.password
    return env


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def run_dbt(
    settings: Settings,
    command: str,
    *,
    dbt_vars: Mapping[str, Any] | None = None,
    select: str | None = None,
    extra_args: tuple[str, ...] = (),
    quiet: bool = True,
    postgres_settings: Mapping[str, str] | None = None,
) -> list[NodeResult]:
    """Run one dbt command (build, seed, test, docs generate, ...); raise DbtFailed on any failure.

    `postgres_settings` are set in every session dbt opens on PostgreSQL (through PGOPTIONS)."""
    from dbt.cli.main import dbtRunner

    project = str(settings.project)
    args = [
        *command.split(),
        "--project-dir",
        project,
        "--profiles-dir",
        project,
        "--target-path",
        str(settings.dbt_target_dir),
        "--log-path",
        str(settings.dbt_log_dir),
    ]
    if dbt_vars:
        args += ["--vars", json.dumps(dict(dbt_vars))]
    if select:
        args += ["--select", select]
    if quiet:
        # Nothing on stdout (a --json command's output must stay JSON): failures come back in
        # DbtFailed with the failing nodes; the full log stays in the log file.
        args[0:0] = ["--log-level", "none"]
    args += list(extra_args)

    env = dbt_env(settings)
    if postgres_settings and settings.dialect == "postgres":
        options = " ".join(f"-c {key}={value}" for key, value in postgres_settings.items())
        env["PGOPTIONS"] = f"{os.environ.get('PGOPTIONS', '')} {options}".strip()
    with _DBT_LOCK, _environment(env):
        result = dbtRunner().invoke(args)

    secrets = settings.secrets()
    if result.exception is not None:
        raise DbtFailed(
            f"dbt {command} could not run: {redact(str(result.exception), secrets).strip()}"
        )
    nodes = [_node(r, secrets) for r in getattr(result.result, "results", None) or ()]
    if not result.success:
        failed = [n for n in nodes if n.status in ("error", "fail", "runtime error")]
        detail = "; ".join(f"{n.resource_type} {n.name}: {n.message}" for n in failed[:5])
        raise DbtFailed(
            f"dbt {command} failed on {len(failed)} node(s), the previous tables are kept: "
            f"{detail or 'see logs/dbt.log'}"
        )
    return nodes


def _node(res: Any, secrets: tuple[str, ...]) -> NodeResult:
    node = getattr(res, "node", None)
    return NodeResult(
        name=getattr(node, "name", "?"),
        resource_type=str(getattr(node, "resource_type", "node")),
        status=str(getattr(res, "status", "")),
        message=redact(str(getattr(res, "message", "") or "").strip(), secrets),
    )
