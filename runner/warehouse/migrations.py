"""Versioned schema of the tables the runner owns (raw inputs, ingest audit, and later engine state).

Each migration is portable SQL applied once, in its own transaction, and recorded in
`schema_migrations`. Concurrent runs are serialised: by an advisory lock on PostgreSQL and by
DuckDB's own one-writer-process file lock. dbt models are not created here; dbt owns those.
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.warehouse import Warehouse


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    # The warehouses whose schema needs it; elsewhere the version is recorded with nothing run.
    dialects: tuple[str, ...] = ("duckdb", "postgres")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "raw inputs (trades, predictions, bars) and the ingest audit (runs, rejected rows)",
        (
            """
            create table if not exists raw_trades (
                trade_id text primary key,
                component_id text not null,
                symbol text not null,
                side text not null,
                quantity double precision not null,
                entry_ts timestamp not null,
                exit_ts timestamp not null,
                entry_price double precision not null,
                exit_price double precision not null,
                fees double precision not null,
                strategy_version text,
                variant text,
                model_version text,
                ingest_id text not null,
                source_row bigint not null,
                loaded_at timestamp not null
            )
            """,
            """
            create table if not exists raw_predictions (
                prediction_id text primary key,
                model_id text not null,
                model_version text not null,
                symbol text not null,
                ts timestamp not null,
                predicted_label integer not null,
                predicted_proba double precision,
                actual_label integer,
                ingest_id text not null,
                source_row bigint not null,
                loaded_at timestamp not null,
                labelled_at timestamp
            )
            """,
            """
            create table if not exists raw_bars (
                symbol text not null,
                ts timestamp not null,
                open double precision not null,
                high double precision not null,
                low double precision not null,
                close double precision not null,
                volume double precision not null,
                ingest_id text not null,
                source_row bigint not null,
                loaded_at timestamp not null,
                primary key (symbol, ts)
            )
            """,
            """
            create table if not exists ingest_runs (
                ingest_id text primary key,
                kind text not null,
                source_file text not null,
                file_sha256 text not null,
                file_format text not null,
                ignored_columns text,
                rows_in_file bigint not null,
                rows_inserted bigint not null,
                rows_updated bigint not null,
                rows_unchanged bigint not null,
                rows_rejected bigint not null,
                started_at timestamp not null,
                finished_at timestamp not null
            )
            """,
            """
            create table if not exists ingest_rejects (
                -- reason is a code (malformed_row, conflict, ...), message says it in words;
                -- the key lets a re-ingest of the same file add no duplicate rows.
                ingest_id text not null,
                kind text not null,
                source_file text not null,
                file_sha256 text not null,
                row_number bigint not null,
                raw_row text,
                reason text not null,
                message text not null,
                rejected_at timestamp not null,
                primary key (kind, file_sha256, row_number, reason)
            )
            """,
        ),
    ),
    Migration(
        2,
        "engine tables: improvement_events (audit trail), optimization_queue, ab_tests",
        (
            # Engine timestamps are `timestamp with time zone`: the monitoring queries compare them
            # with NOW(), which is timestamptz on both warehouses. JSON is stored as text holding a
            # JSON document (portable; cast with ::json on DuckDB, ::jsonb on PostgreSQL).
            # Open-ended vocabularies (event_type, frequency) have no CHECK: DuckDB cannot alter
            # a constraint later, so only closed enums are checked in SQL.
            """
            create table if not exists improvement_events (
                -- append-only: the engine inserts, never updates or deletes (runner/audit.py)
                event_id text primary key,
                event_timestamp timestamp with time zone not null,
                event_type text not null,
                component_id text,
                trigger_reason text not null,
                improvement_metrics text not null,
                run_id text,
                recommendation_id text,
                alert_id text,
                task_id text,
                deployment_id text,
                test_id text,
                as_of_date date
            )
            """,
            "create index if not exists improvement_events_by_time"
            " on improvement_events (event_timestamp)",
            """
            create table if not exists optimization_queue (
                task_id text primary key,
                task_type text not null check (
                    task_type in ('hyperparameter', 'retrain', 'feature_selection', 'risk_adjustment')
                ),
                component_id text,
                frequency text not null,
                priority integer not null default 3 check (priority >= 1),
                config text not null default '{}',
                enabled boolean not null default true,
                status text not null default 'pending' check (
                    status in ('pending', 'running', 'succeeded', 'failed', 'paused')
                ),
                next_run_at timestamp with time zone not null,
                last_run_at timestamp with time zone,
                consecutive_failures integer not null default 0 check (consecutive_failures >= 0),
                last_error text,
                source text not null check (source in ('declared', 'recommendation')),
                recommendation_id text,
                created_at timestamp with time zone not null,
                updated_at timestamp with time zone not null
            )
            """,
            """
            create table if not exists ab_tests (
                test_id text primary key,
                test_name text not null,
                component_id text not null,
                control_version text not null,
                treatment_version text not null,
                status text not null default 'running' check (
                    status in ('running', 'promoted', 'rolled_back', 'inconclusive', 'aborted')
                ),
                current_stage integer not null default 10 check (current_stage in (10, 50, 100)),
                improvement_percent double precision,
                alpha double precision not null check (alpha > 0 and alpha < 1),
                planned_n bigint not null check (planned_n > 0),
                margin double precision not null check (margin >= 0),
                primary_metric text not null,
                randomisation_unit text not null,
                n_control bigint not null default 0,
                n_treatment bigint not null default 0,
                estimate double precision,
                cs_lower double precision,
                cs_upper double precision,
                always_valid_p double precision,
                srm_p double precision,
                started_at timestamp with time zone not null,
                updated_at timestamp with time zone not null,
                ended_at timestamp with time zone
            )
            """,
        ),
    ),
    Migration(
        3,
        "OPTIMIZE: strategy versions and optimization runs",
        (
            """
            create table if not exists strategy_versions (
                -- the parameters a component runs are a version; a run that passes its gates adds
                -- a candidate; DEPLOY moves versions through staging to production.
                component_id text not null,
                version integer not null check (version >= 1),
                strategy text not null,
                params text not null,
                parent_version integer,
                optimization_run_id text,
                status text not null check (
                    status in ('production', 'candidate', 'staging', 'retired', 'rolled_back',
                               'superseded')
                ),
                created_at timestamp with time zone not null,
                status_changed_at timestamp with time zone not null,
                note text not null default '',
                primary key (component_id, version)
            )
            """,
            """
            create table if not exists optimization_runs (
                run_id text primary key,
                component_id text not null,
                task_id text,
                recommendation_id text,
                trigger_reason text not null,
                study_name text not null,
                storage_kind text not null,
                strategy text not null,
                search_space text not null,
                objective text not null,
                seed bigint,
                incumbent_version integer,
                candidate_version integer,
                n_trials integer not null default 0,
                n_pruned integer not null default 0,
                n_failed integer not null default 0,
                best_trial integer,
                best_params text,
                in_sample_metrics text,
                out_of_sample_metrics text,
                dsr double precision,
                pbo double precision,
                min_trl double precision,
                track_length integer,
                holdout_p double precision,
                verdict text not null check (
                    verdict in ('running', 'candidate', 'rejected', 'failed', 'interrupted')
                ),
                reasons text not null default '[]',
                gates text not null default '{}',
                trial_returns_path text,
                trial_returns_sha256 text,
                data_start timestamp,
                data_end timestamp,
                started_at timestamp with time zone not null,
                finished_at timestamp with time zone,
                duration_seconds double precision,
                code_version text not null
            )
            """,
            "create index if not exists optimization_runs_by_component"
            " on optimization_runs (component_id, started_at)",
        ),
    ),
    Migration(
        4,
        "OPTIMIZE: model registry (model_versions) and feature importances",
        (
            """
            create table if not exists model_versions (
                -- one trained classifier per row; the LightGBM text lives at artifact_path and
                -- artifact_sha256 pins it. Only status moves afterwards (runner/optimize/models.py).
                -- features, params, gate_reasons and gate_values are JSON documents stored as text.
                model_id text not null,
                version integer not null check (version >= 1),
                component_id text,
                features text not null,
                params text not null,
                training_start timestamp,
                training_end timestamp,
                label_horizon_bars integer not null check (label_horizon_bars >= 1),
                oos_rows integer,
                oos_log_loss double precision,
                oos_auc double precision,
                oos_brier double precision,
                oos_accuracy double precision,
                oos_calibration_error double precision,
                artifact_path text,
                artifact_sha256 text,
                parent_version integer,
                status text not null check (
                    status in ('production', 'candidate', 'rejected', 'retired')
                ),
                gate_reasons text not null default '[]',
                gate_values text not null default '{}',
                optimization_run_id text,
                code_version text not null,
                created_at timestamp with time zone not null,
                status_changed_at timestamp with time zone not null,
                primary key (model_id, version)
            )
            """,
            """
            create table if not exists feature_importances (
                -- gain: share of the model's total split gain; permutation_*: out-of-sample
                -- log-loss increase when the feature is shuffled (mean, std over folds x repeats).
                model_id text not null,
                version integer not null,
                feature text not null,
                gain double precision,
                permutation_importance double precision,
                permutation_std double precision,
                selected boolean not null,
                primary key (model_id, version, feature)
            )
            """,
        ),
    ),
    Migration(
        5,
        "DEPLOY: deployments, smoke-test checks, the A/B test's rollout state, active allocation",
        (
            """
            create table if not exists deployments (
                -- one row per version a component runs or tries: a production row (active, then
                -- superseded) or a staging row moving smoke_testing -> failed | ab_testing ->
                -- promoted | rolled_back | inconclusive | aborted (runner/deploy/state.py).
                deployment_id text primary key,
                component_id text not null,
                version integer not null check (version >= 1),
                environment text not null check (environment in ('staging', 'production')),
                status text not null check (
                    status in ('smoke_testing', 'failed', 'ab_testing', 'promoted', 'rolled_back',
                               'inconclusive', 'aborted', 'active', 'superseded')
                ),
                traffic_share double precision not null check (
                    traffic_share >= 0 and traffic_share <= 1
                ),
                test_id text,
                previous_version integer,
                open_position_policy text not null default 'finish' check (
                    open_position_policy in ('finish', 'move_stops', 'flatten')
                ),
                created_at timestamp with time zone not null,
                updated_at timestamp with time zone not null,
                ended_at timestamp with time zone,
                reason text not null default ''
            )
            """,
            "create index if not exists deployments_by_component"
            " on deployments (component_id, status)",
            """
            create table if not exists deployment_checks (
                -- the smoke tests of a staging deployment, one row per check and outcome
                deployment_id text not null,
                check_name text not null,
                passed boolean not null,
                detail text not null,
                metrics text not null default '{}',
                checked_at timestamp with time zone not null,
                primary key (deployment_id, check_name)
            )
            """,
            # The rollout state beside the design of migration 2: which deployment the test
            # belongs to, the data time its trades count from (overall and in this stage), the
            # stage's time box and its one extension, a pause (sample-ratio mismatch), guardrails.
            "alter table ab_tests add column if not exists deployment_id text",
            "alter table ab_tests add column if not exists data_start timestamp",
            "alter table ab_tests add column if not exists stage_data_start timestamp",
            "alter table ab_tests add column if not exists stage_started_at"
            " timestamp with time zone",
            "alter table ab_tests add column if not exists stage_days double precision",
            "alter table ab_tests add column if not exists stage_extended boolean default false",
            "alter table ab_tests add column if not exists min_n_per_arm bigint",
            "alter table ab_tests add column if not exists guardrails text default '{}'",
            "alter table ab_tests add column if not exists paused boolean default false",
            "alter table ab_tests add column if not exists decision_reason text",
            "alter table ab_tests add column if not exists look_count bigint default 0",
            """
            create table if not exists simulation_state (
                -- the paper-trading simulator's cursor: bars up to simulated_until are replayed
                component_id text primary key,
                symbol text not null,
                simulated_until timestamp not null,
                updated_at timestamp with time zone not null
            )
            """,
            """
            create table if not exists simulation_open_trades (
                -- live paper trades entered but not closed at the cursor, with the arm and test
                -- that took them: they close under the version that opened them (the policy)
                component_id text not null,
                version integer not null,
                entry_ts timestamp not null,
                unit_key text not null,
                arm text not null,
                test_id text,
                recorded_at timestamp with time zone not null,
                primary key (component_id, version, entry_ts)
            )
            """,
            """
            create table if not exists ab_assignments (
                -- the randomisation log: every unit (signal) assigned during a test and its arm,
                -- the input of the sample-ratio-mismatch check (assigned, not executed)
                test_id text not null,
                unit_key text not null,
                arm text not null check (arm in ('control', 'treatment')),
                stage integer not null,
                assigned_at timestamp not null,
                recorded_at timestamp with time zone not null,
                primary key (test_id, unit_key)
            )
            """,
            """
            create or replace view active_allocation as
            -- what a trading system reads: per component, each version and its share of units
            with treatment as (
                select component_id, version, traffic_share, test_id
                from deployments
                where environment = 'staging' and status = 'ab_testing'
            ),
            production as (
                select component_id, version
                from deployments
                where environment = 'production' and status = 'active'
            )
            select
                p.component_id,
                p.version,
                case when t.test_id is null then 'production' else 'control' end as arm,
                1.0 - coalesce(t.traffic_share, 0.0) as traffic_share,
                t.test_id
            from production as p
            left join treatment as t on t.component_id = p.component_id
            union all
            select t.component_id, t.version, 'treatment' as arm, t.traffic_share, t.test_id
            from treatment as t
            """,
        ),
    ),
    Migration(
        6,
        "LOOP: the notification outbox and task leases on optimization_queue",
        (
            """
            create table if not exists notification_outbox (
                -- messages to Discord, written in the transaction of the event they announce and
                -- delivered afterwards, in order, once each (runner/notify)
                message_id text primary key,
                event_id text,
                kind text not null,
                severity text not null,
                payload text not null,
                attachments text not null default '[]',
                status text not null check (status in ('pending', 'sent', 'failed', 'skipped')),
                attempts integer not null default 0,
                last_error text,
                created_at timestamp with time zone not null,
                sent_at timestamp with time zone,
                discord_message_id text
            )
            """,
            "create index if not exists notification_outbox_by_status"
            " on notification_outbox (status, created_at)",
            # Leases: a runner owns a task until lease_expires_at; a crashed runner's lease is
            # taken over after it. one_off tasks (from recommendations) run once.
            "alter table optimization_queue add column if not exists lease_owner text",
            "alter table optimization_queue add column if not exists lease_expires_at"
            " timestamp with time zone",
            "alter table optimization_queue add column if not exists timeout_seconds integer",
            "alter table optimization_queue add column if not exists one_off boolean default false",
        ),
    ),
    Migration(
        7,
        "DuckDB: no secondary index on a column the engine updates (outbox and deployment status)",
        (
            # DuckDB (1.5) can corrupt an ART index on an updated column when it replays the WAL
            # of a killed process: the next update of the row fails with "Failed to delete all
            # rows from index" and the file stays unusable (tests/python/test_cycle_faults.py).
            # These tables are small; DuckDB scans them with zonemaps. PostgreSQL keeps them.
            "drop index if exists notification_outbox_by_status",
            "drop index if exists deployments_by_component",
        ),
        dialects=("duckdb",),
    ),
    Migration(
        8,
        "PostgreSQL: raw rows by loaded_at, trades by (component, exit time), for hourly builds",
        (
            # The hourly build reads what was loaded since the last one (the incremental models'
            # watermark, the scoped data tests, the bar check): without these, each of those is
            # a scan of every raw row. DuckDB prunes the same reads with its zonemaps.
            "create index if not exists raw_trades_by_loaded_at on raw_trades (loaded_at)",
            "create index if not exists raw_bars_by_loaded_at on raw_bars (loaded_at)",
            "create index if not exists raw_predictions_by_loaded_at on raw_predictions (loaded_at)",
            # int_trades_aggregated_to_daily recomputes a component's day from its trades.
            "create index if not exists raw_trades_by_component_exit"
            " on raw_trades (component_id, exit_ts)",
        ),
        dialects=("postgres",),
    ),
    Migration(
        9,
        "the fingerprint of the dbt project the analytics schema was last fully built with",
        (
            """
            create table if not exists analytics_builds (
                -- one row: a build with other project files is a full one; with the same, the
                -- hourly build leaves the views and the seeds as they are (runner/analyze.py)
                fingerprint text not null,
                built_at timestamp not null
            )
            """,
        ),
    ),
)

LATEST = MIGRATIONS[-1].version


def migrate(wh: Warehouse) -> list[int]:
    """Apply every pending migration; return the versions applied (empty when up to date)."""
    applied: list[int] = []
    with wh.transaction():
        if wh.dialect == "postgres":
            # Serialise concurrent runners on this schema; released at commit. (DuckDB needs no
            # lock: only one process can open the file for writing.)
            wh.execute(
                "select pg_advisory_xact_lock(hashtext(%(key)s))", {"key": f"tb:{wh.schema}"}
            )
        wh.execute(
            "create table if not exists schema_migrations ("
            " version integer primary key, description text not null,"
            " applied_at timestamp not null)"
        )
        done = {row[0] for row in wh.fetchall("select version from schema_migrations")}
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            for statement in migration.statements if wh.dialect in migration.dialects else ():
                wh.execute(statement)
            wh.execute(
                "insert into schema_migrations (version, description, applied_at)"
                " values (%(v)s, %(d)s, current_timestamp)",
                {"v": migration.version, "d": migration.description},
            )
            applied.append(migration.version)
    if applied and wh.dialect == "duckdb":
        # Schema changes go into the file now, not into the WAL: DuckDB's replay of DDL after a
        # crash is where its recovery bugs live.
        wh.execute("checkpoint")
    return applied


def current_version(wh: Warehouse) -> int:
    if not wh.table_exists("schema_migrations"):
        return 0
    row = wh.fetchone("select max(version) from schema_migrations")
    return int(row[0]) if row and row[0] is not None else 0
