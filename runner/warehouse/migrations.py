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
            for statement in migration.statements:
                wh.execute(statement)
            wh.execute(
                "insert into schema_migrations (version, description, applied_at)"
                " values (%(v)s, %(d)s, current_timestamp)",
                {"v": migration.version, "d": migration.description},
            )
            applied.append(migration.version)
    return applied


def current_version(wh: Warehouse) -> int:
    if not wh.table_exists("schema_migrations"):
        return 0
    row = wh.fetchone("select max(version) from schema_migrations")
    return int(row[0]) if row and row[0] is not None else 0
