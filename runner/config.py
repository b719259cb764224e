"""Configuration, loaded once from the environment (prefix TRADEBASE_, plus DATABASE_URL and DISCORD_WEBHOOK_URL) and CLI flags.

Nothing else in the package reads environment variables; commands receive a `Settings` and pass it down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runner.errors import ConfigError

Dialect = Literal["duckdb", "postgres"]


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest directory holding dbt_project.yml, from `start` (default: cwd) up, else the package's."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dbt_project.yml").is_file():
            return candidate
    packaged = Path(__file__).resolve().parent.parent
    if (packaged / "dbt_project.yml").is_file():
        return packaged
    raise ConfigError(
        "No dbt_project.yml found here or above; run the runner from the tradebase project "
        "or set TRADEBASE_PROJECT_DIR."
    )


class Settings(BaseSettings):
    """Every knob of the engine. Environment: TRADEBASE_<FIELD>; the warehouse URL: DATABASE_URL; the Discord webhook: DISCORD_WEBHOOK_URL."""

    model_config = SettingsConfigDict(
        env_prefix="TRADEBASE_", extra="ignore", populate_by_name=True
    )

    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "TRADEBASE_DATABASE_URL"),
        description="postgresql://user:pass@host:port/db; unset means the embedded DuckDB file.",
    )
    duckdb_path: Path = Field(default=Path("tradebase.duckdb"), description="DuckDB file.")
    schema_name: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TRADEBASE_SCHEMA"),
        description="Schema for every table and model (default: main on DuckDB, public on PostgreSQL).",
    )
    project_dir: Path | None = Field(default=None, description="The dbt project (dbt_project.yml).")
    dbt_artifacts_dir: Path | None = Field(
        default=None,
        description="Where dbt writes target/ and logs/ (default: the project directory).",
    )
    lock_timeout_seconds: float = Field(
        default=30.0, description="How long to wait for another runner holding the DuckDB file."
    )

    artifact_dir: Path | None = Field(
        default=None,
        description="Where runs keep artifacts (trial returns, models); default: beside the warehouse.",
    )
    log_dir: Path | None = Field(
        default=None,
        description="Where `runner cycle` writes its improvement_cycle_*.log files; default: "
        "logs/ beside the artifacts.",
    )
    cycle_budget_seconds: float = Field(
        default=2400.0, gt=0, description="Default time budget of one `runner cycle`."
    )
    cycle_full_refresh_hours: float = Field(
        default=24.0,
        ge=0,
        description="A cycle's ANALYZE rebuilds every model from the raw tables and runs every data test on every row when its last such build is older than this (0: every cycle); the builds between are incremental and test the newly loaded rows.",
    )

    # -- OPTIMIZE: walk-forward search and the gates that refuse overfitting -------------------
    optimize_trials: int = Field(default=100, ge=2, description="Trials per study.")
    optimize_seed: int | None = Field(
        default=None,
        description="Seed of the sampler for searches the queue starts (unset: a fresh one each time).",
    )
    optimize_lookback_days: int = Field(
        default=1826, ge=30, description="Calendar days of bars a study sees (search + holdout)."
    )
    optimize_folds: int = Field(
        default=5, ge=2, description="Walk-forward test blocks; one more block trains the first."
    )
    optimize_holdout_fraction: float = Field(
        default=0.2,
        gt=0,
        lt=0.5,
        description="Share of the bars kept for the final untouched block.",
    )
    optimize_objective: Literal["sharpe", "sortino", "calmar", "expectancy"] = Field(
        default="sharpe", description="What a trial maximises on the walk-forward folds."
    )
    optimize_fees_bps: float = Field(default=1.0, ge=0, description="Fees per fill, basis points.")
    optimize_slippage_bps: float = Field(default=1.0, ge=0, description="Slippage per fill, bps.")
    optimize_dsr_min: float = Field(
        default=0.95, gt=0, lt=1, description="Deflated Sharpe ratio a candidate needs."
    )
    optimize_pbo_max: float = Field(
        default=0.3, gt=0, lt=1, description="Highest probability of backtest overfitting allowed."
    )
    optimize_pbo_blocks: int = Field(
        default=16, ge=2, multiple_of=2, description="CSCV blocks of the PBO estimate (even)."
    )
    optimize_pbo_min_correlation: float = Field(
        default=0.6, gt=0, lt=1, description="Trials correlated above this are one strategy in PBO."
    )
    optimize_alpha: float = Field(
        default=0.05, gt=0, lt=0.5, description="Level of MinTRL and the holdout paired test."
    )
    optimize_storage_url: SecretStr | None = Field(
        default=None,
        description="Optuna storage URL; default: SQLite beside the DuckDB file, or the PostgreSQL warehouse.",
    )
    # -- risk adjustment: hard bounds it can never cross, and what it must achieve ----------
    risk_vol_target_max: float = Field(
        default=0.4, ge=0, le=1, description="Highest volatility target (annualised)."
    )
    risk_max_position_min: float = Field(
        default=0.05, gt=0, le=1, description="Smallest maximum position (fraction of capital)."
    )
    risk_max_position_max: float = Field(
        default=1.0, gt=0, le=1, description="Largest maximum position (fraction of capital)."
    )
    risk_kelly_cap_min: float = Field(
        default=0.05, gt=0, le=1, description="Smallest cap on the fractional Kelly size."
    )
    risk_kelly_cap_max: float = Field(
        default=1.0, gt=0, le=1, description="Largest cap on the fractional Kelly size."
    )
    risk_daily_loss_limit_max: float = Field(
        default=0.05, ge=0, lt=1, description="Loosest daily loss limit (fraction of equity)."
    )
    risk_confidence: float = Field(
        default=0.95, gt=0.5, lt=1, description="Confidence that drawdown stays under the warning."
    )
    risk_bootstrap_samples: int = Field(
        default=2000, ge=100, description="Bootstrap paths of the one-year drawdown."
    )
    # -- DEPLOY: the A/B design fixed when a test starts (runner/deploy, docs/deploy.md) ------
    deploy_alpha: float = Field(
        default=0.05, gt=0, lt=0.5, description="Level of the always-valid confidence sequence."
    )
    deploy_planned_n: int = Field(
        default=5000, ge=100, description="N*: planned trades in both arms; spent = inconclusive."
    )
    deploy_margin_sigma: float = Field(
        default=0.0,  # 0: roll back once confidently worse (docs/statistics.md, measured)
        ge=0,
        le=1,
        description="Rollback margin m in standard deviations of the incumbent's trade return.",
    )
    deploy_min_trades_per_arm: int = Field(
        default=30, ge=2, description="Trades per arm a stage needs before it may move."
    )
    deploy_stage_days: float = Field(
        default=30.0, gt=0, description="Time box of a stage in days of data; extended once."
    )
    deploy_srm_alpha: float = Field(
        default=0.001, gt=0, lt=0.5, description="p below which a sample ratio mismatch pauses."
    )
    deploy_smoke_days: int = Field(default=180, ge=10, description="Recent days smoke-tested.")
    optimize_heartbeat_seconds: int = Field(
        default=5, ge=1, description="How often a study's workers say they are alive."
    )
    optimize_grace_seconds: int = Field(
        default=15, ge=2, description="Silence after which a worker's running trial is failed."
    )
    # -- SCHEDULE: the optimization queue (runner/schedule, docs/scheduling.md) ---------------
    schedule_tasks_file: Path | None = Field(
        default=None,
        description="Declared tasks (default: seeds/optimization_tasks.csv of the project).",
    )
    schedule_task_timeout_seconds: int = Field(
        default=3600, ge=1, description="A task's hard time limit unless it declares its own."
    )
    schedule_lease_grace_seconds: int = Field(
        default=60,
        ge=1,
        description="A lease outlives its task's timeout by this much before another runner may take it over.",
    )
    schedule_recommendation_retry_hours: float = Field(
        default=24.0,
        ge=0,
        description="An open recommendation whose task ran gets a new one after this long.",
    )
    schedule_max_failures: int = Field(
        default=5, ge=1, description="Consecutive failures that disable a task (circuit breaker)."
    )
    # -- notifications: Discord webhook and the outbox's delivery (runner/notify) --------------
    discord_webhook_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DISCORD_WEBHOOK_URL", "TRADEBASE_DISCORD_WEBHOOK_URL"),
        description="https://discord.com/api/webhooks/<id>/<token>; unset means notifications off.",
    )
    notify_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of one request to the webhook."
    )
    notify_budget_seconds: float = Field(
        default=60.0, gt=0, description="Time one delivery run may spend (waits included)."
    )
    notify_max_attempts: int = Field(
        default=5, ge=1, description="Attempts per message in one run (429, 5xx, network errors)."
    )
    notify_backoff_seconds: float = Field(
        default=0.5, gt=0, description="First backoff after a 5xx or network error; doubles."
    )
    cycle_report: bool = Field(
        default=True,
        description="Rebuild the HTML report and its charts at the end of every cycle (the Discord summary attaches the key charts); `runner report` builds it on demand either way.",
    )

    @field_validator("database_url", "optimize_storage_url", mode="before")
    @classmethod
    def _empty_url_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("discord_webhook_url", mode="before")
    @classmethod
    def _empty_webhook_is_none(cls, value: object) -> object:
        # Never raise here: a validation error would print the URL (a secret) as the input.
        return None if value in ("", None) else value

    @field_validator("schema_name")
    @classmethod
    def _plain_identifier(cls, value: str | None) -> str | None:
        if value is not None and not value.replace("_", "").isalnum():
            raise ValueError("TRADEBASE_SCHEMA must be letters, digits and underscores")
        return value

    @property
    def dialect(self) -> Dialect:
        return "postgres" if self.database_url is not None else "duckdb"

    @property
    def schema(self) -> str:  # type: ignore[override]  # shadows pydantic's deprecated schema()
        if self.schema_name:
            return self.schema_name
        return "public" if self.dialect == "postgres" else "main"

    # Plain properties, not cached: model_copy(update=...) copies a cached value along, so a copy
    # with another project_dir or DATABASE_URL would keep the old one.
    @property
    def project(self) -> Path:
        return (self.project_dir or find_project_dir()).resolve()

    @property
    def dbt_target_dir(self) -> Path:
        return (self.dbt_artifacts_dir or self.project) / "target"

    @property
    def dbt_log_dir(self) -> Path:
        return (self.dbt_artifacts_dir or self.project) / "logs"

    @property
    def artifacts(self) -> Path:
        if self.artifact_dir is not None:
            return self.artifact_dir.expanduser().resolve()
        base = self.duckdb_file.parent if self.dialect == "duckdb" else Path.cwd()
        return base / "tradebase-artifacts"

    @property
    def logs(self) -> Path:
        if self.log_dir is not None:
            return self.log_dir.expanduser().resolve()
        return self.artifacts.parent / "logs"

    @property
    def duckdb_file(self) -> Path:
        return self.duckdb_path.expanduser().resolve()

    @property
    def postgres(self) -> PostgresParams:
        if self.database_url is None:
            raise ConfigError("DATABASE_URL is not set; the warehouse is DuckDB.")
        return PostgresParams.from_url(self.database_url.get_secret_value())

    def secrets(self) -> tuple[str, ...]:
        """Literal secret values to mask wherever text leaves the process."""
        found: list[str] = []
        if self.database_url is not None:
            found += [self.postgres.password, self.database_url.get_secret_value()]
        if self.optimize_storage_url is not None:
            storage = self.optimize_storage_url.get_secret_value()
            found += [storage, unquote(urlsplit(storage).password or "")]
        if self.discord_webhook_url is not None:
            webhook = self.discord_webhook_url.get_secret_value()
            token = webhook.partition("?")[0].rstrip("/").rpartition("/")[2]
            # The whole URL, and its token (the last path segment) wherever it shows up alone;
            # a short last segment is a word, not a token, and masking it would garble text.
            found += [webhook, token if len(token) >= 16 else ""]
        return tuple(s for s in found if s)


@dataclass(frozen=True)
class PostgresParams:
    """The parts of a postgresql:// URL; the password is kept out of repr()."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    dbname: str = ""

    @classmethod
    def from_url(cls, url: str) -> PostgresParams:
        parts = urlsplit(url)
        scheme = parts.scheme.split("+")[0]
        if scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
            raise ConfigError(
                "DATABASE_URL must look like postgresql://user:password@host:5432/dbname."
            )
        try:
            port = parts.port or 5432
        except ValueError as exc:
            raise ConfigError("DATABASE_URL has a port that is not a number.") from exc
        return cls(
            host=parts.hostname or "localhost",
            port=port,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
            dbname=unquote(parts.path.strip("/")),
        )


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (and `overrides`), or a ConfigError naming each variable
    that is wrong and why; the values themselves are not repeated (some are secrets)."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "settings"
            field_info = Settings.model_fields.get(name)
            alias = field_info.validation_alias if field_info is not None else None
            variable = (
                alias.choices[0]
                if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str)
                else f"TRADEBASE_{name.upper()}"
            )
            problems.append(f"{variable}: {error['msg']}")
        raise ConfigError(
            "Invalid setting(s): " + "; ".join(problems) + " (docs/configuration.md lists them)."
        ) from None
