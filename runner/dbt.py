"""The one module that runs dbt: in-process through dbtRunner, one invocation at a time.

It passes the project, profiles and target explicitly, puts the warehouse settings into the
environment the committed profiles.yml reads, and turns failures into one redacted message.
A DbtSession keeps the parsed project between the invocations of a long-lived process.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
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


# What a build's relations depend on besides the raw rows.
_PROJECT_FILES = ("dbt_project.yml", "models", "macros", "seeds", "tests/dbt")


def project_fingerprint(project: Path) -> str:
    """SHA-256 of the dbt project's files (models, macros, seeds, data tests, dbt_project.yml)."""
    digest = hashlib.sha256()
    for part in _PROJECT_FILES:
        root = project / part
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            name = path.relative_to(project).as_posix().encode()
            digest.update(name + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class DbtSession:
    """The parsed dbt project, kept for the next invocations of one long-lived process
    (`runner cycle --every`): each invocation of a fresh process imports dbt and loads the
    project again (about 2 s here, a large share of an hourly build, docs/benchmarks.md).

    A parse is kept per project, warehouse and set of vars (dbt's own rule for reusing a parse)
    and used while the project's files are unchanged: an edited model is parsed again, and the
    parses of its previous files are dropped."""

    def __init__(self) -> None:
        self._manifests: dict[str, tuple[str, Any]] = {}  # key -> (project fingerprint, parse)
        self.parses = 0  # how many times this session parsed the project

    @property
    def kept(self) -> int:
        """How many parses the session holds."""
        return len(self._manifests)

    def invoke(self, settings: Settings, common: list[str], args: list[str]) -> Any:
        """dbtRunner(...).invoke(args) with the session's parse of the project; `common` are the
        project, profile, target, log and vars arguments `args` carry too. The caller holds the
        dbt lock and has set the warehouse environment."""
        from dbt.cli.main import dbtRunner

        fingerprint = project_fingerprint(settings.project)
        key = self._key(fingerprint, settings, common)
        kept = self._manifests.get(key)
        if kept is not None:
            return dbtRunner(manifest=kept[1]).invoke(args)
        parsed = dbtRunner().invoke(["parse", *common])
        if not parsed.success or parsed.result is None:
            # Let the real command meet (and report) whatever stopped the parse.
            return dbtRunner().invoke(args)
        self.parses += 1
        manifest: Any = parsed.result  # a parse returns the Manifest
        self._manifests = {k: v for k, v in self._manifests.items() if v[0] == fingerprint}
        self._manifests[key] = (fingerprint, manifest)
        return dbtRunner(manifest=manifest).invoke(args)

    @staticmethod
    def _key(fingerprint: str, settings: Settings, common: list[str]) -> str:
        # The warehouse and schema are written into every node at parse time; the settings'
        # values (the URL with its password) go into the digest, never into memory as text.
        parts = [fingerprint, *sorted(dbt_env(settings).items()), *common]
        return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


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
    session: DbtSession | None = None,
) -> list[NodeResult]:
    """Run one dbt command (build, seed, test, docs generate, ...); raise DbtFailed on any failure.

    `postgres_settings` are set in every session dbt opens on PostgreSQL (through PGOPTIONS).
    With a `session`, the project is parsed once for the session, not at every command."""
    from dbt.cli.main import dbtRunner

    project = str(settings.project)
    common = [
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
        common += ["--vars", json.dumps(dict(dbt_vars))]
    args = [*command.split(), *common]
    if select:
        args += ["--select", select]
    if quiet:
        # Nothing on stdout (a --json command's output must stay JSON): failures come back in
        # DbtFailed with the failing nodes; the full log stays in the log file.
        args[0:0] = ["--log-level", "none"]
        common[0:0] = ["--log-level", "none"]
    args += list(extra_args)

    env = dbt_env(settings)
    if postgres_settings and settings.dialect == "postgres":
        options = " ".join(f"-c {key}={value}" for key, value in postgres_settings.items())
        env["PGOPTIONS"] = f"{os.environ.get('PGOPTIONS', '')} {options}".strip()
    with _DBT_LOCK, _environment(env):
        try:
            if session is None:
                result = dbtRunner().invoke(args)
            else:
                result = session.invoke(settings, common, args)
        finally:
            if settings.dialect == "duckdb":
                _close_duckdb()

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


def _close_duckdb() -> None:
    """Close the DuckDB instance dbt-duckdb keeps open between invocations (profiles.yml,
    keep_open): DuckDB admits one process at a time on a file, and the runner's own connections,
    `runner status` in a shell and BI tools must be able to open it between builds. Closing
    writes the build's tables to the file (a checkpoint)."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    environment = DuckDBConnectionManager._ENV  # noqa: SLF001 - no public accessor
    DuckDBConnectionManager.close_all_connections()  # type: ignore[no-untyped-call]
    if environment is not None:
        environment.close()


def _node(res: Any, secrets: tuple[str, ...]) -> NodeResult:
    node = getattr(res, "node", None)
    return NodeResult(
        name=getattr(node, "name", "?"),
        resource_type=str(getattr(node, "resource_type", "node")),
        status=str(getattr(res, "status", "")),
        message=redact(str(getattr(res, "message", "") or "").strip(), secrets),
    )
