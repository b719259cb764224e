"""Writing one validated file into the warehouse: a set-based merge in a single transaction.

Valid rows and file rejects are bulk-loaded (COPY on PostgreSQL) into temporary tables, compared
with the raw table by key, and then inserted, left alone, filled in or rejected as conflicts; the
rejects and the run are recorded in the same transaction. The SQL is written once for both
warehouses. It does not parse or judge values (reader.py, validate.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from runner.ingest.result import ReasonCount
from runner.ingest.specs import FieldType, Spec
from runner.ingest.validate import key_text
from runner.warehouse import DuckDBWarehouse, Warehouse

if TYPE_CHECKING:
    import pyarrow as pa

_SQL_TYPE: dict[FieldType, str] = {
    "text": "text",
    "choice": "text",
    "number": "double precision",
    "timestamp": "timestamp",
    "label": "integer",
}
_FIRST_ROWS = 5
_COPY_ROWS = 200_000  # rows per COPY into the PostgreSQL stage


@dataclass(frozen=True)
class Audit:
    """Who and what is being merged, for the audit columns of every row written."""

    ingest_id: str
    kind: str
    source_file: str
    file_sha256: str
    file_format: str
    rows_in_file: int
    ignored_columns: str | None
    started_at: datetime
    now: datetime

    def params(self) -> dict[str, object]:
        return {
            "ingest_id": self.ingest_id,
            "kind": self.kind,
            "source_file": self.source_file,
            "sha": self.file_sha256,
            "now": self.now,
        }


@dataclass(frozen=True)
class MergeCounts:
    inserted: int
    unchanged: int
    updated: int
    rejected: int
    by_reason: tuple[ReasonCount, ...]


def _same(spec: Spec, column: str) -> str:
    return f"s.{column} is not distinct from t.{column}"


def _outcome(spec: Spec) -> str:
    """unchanged | updated (fill-in of an empty column) | conflict, per staged row already loaded."""
    fixed = " and ".join(_same(spec, c) for c in spec.columns if c != spec.fill_in)
    if spec.fill_in is None:
        return f"case when {fixed} then 'unchanged' else 'conflict' end"
    fill = spec.fill_in
    return (
        f"case when {fixed} and (s.{fill} is null or s.{fill} = t.{fill}) then 'unchanged'"
        f" when {fixed} and t.{fill} is null then 'updated'"
        " else 'conflict' end"
    )


def _differing(spec: Spec) -> str:
    parts = []
    for c in spec.columns:
        if c == spec.fill_in:
            parts.append(f"case when s.{c} <> t.{c} then '{c}' end")
        elif c not in spec.key:
            parts.append(f"case when s.{c} is distinct from t.{c} then '{c}' end")
    return f"concat_ws(', ', {', '.join(parts)})"


def _stage(wh: Warehouse, spec: Spec, valid: pa.Table) -> None:
    """Make the valid rows readable as `ingest_stage`: the Arrow table itself on DuckDB (no
    copy), a temporary table filled by COPY in slices on PostgreSQL (bounded memory)."""
    import pyarrow as pa

    if isinstance(wh, DuckDBWarehouse):
        wh.connection.register("ingest_stage", valid)
        return
    stage_cols = ", ".join(f"{f.name} {_SQL_TYPE[f.type]}" for f in spec.fields)
    wh.execute(f"create temporary table ingest_stage ({stage_cols}, source_row bigint)")
    for batch in valid.to_batches(max_chunksize=_COPY_ROWS):
        wh.load_arrow("ingest_stage", pa.Table.from_batches([batch]))
    wh.execute("analyze ingest_stage")


def merge_file(
    wh: Warehouse,
    spec: Spec,
    audit: Audit,
    valid: pa.Table,
    rejects: pa.Table,
    raw_rows: Callable[[list[int]], pa.Table],
) -> MergeCounts:
    """Merge one file atomically: all of its rows and rejects are written, or nothing.

    Only the staged rows whose key is already loaded are compared (`ingest_matched`, usually
    few); the others are inserted straight from the stage. `raw_rows` gives the raw text of
    the rows found in conflict, which the stage does not carry.
    """
    p = audit.params()
    on = " and ".join(f"s.{k} = t.{k}" for k in spec.key)
    cols = ", ".join(spec.columns)
    keys = ", ".join(f"s.{k}" for k in spec.key)
    fill = f", s.{spec.fill_in}" if spec.fill_in else ""
    with wh.transaction():
        if wh.dialect == "postgres":
            # One ingest per schema at a time: two concurrent new rows with one key must not race.
            wh.execute(
                "select pg_advisory_xact_lock(hashtext(%(key)s))", {"key": f"tb:ingest:{wh.schema}"}
            )
        _stage(wh, spec, valid)
        try:
            wh.execute(
                "create temporary table ingest_stage_rejects"
                " (row_number bigint, raw_row text, reason text, message text)"
            )
            wh.load_arrow("ingest_stage_rejects", rejects)
            wh.execute(
                f"""
                create temporary table ingest_matched as
                select {keys}, s.source_row{fill}, {_outcome(spec)} as outcome,
                    {_differing(spec)} as differing
                from ingest_stage s join {spec.table} t on {on}
                """
            )
            outcomes = {
                str(o): int(n)
                for o, n in wh.fetchall(
                    "select outcome, count(*) from ingest_matched group by outcome"
                )
            }
            wh.execute(
                "create temporary table ingest_conflict_texts (row_number bigint, raw_row text)"
            )
            if outcomes.get("conflict"):
                conflicted = wh.fetchall(
                    "select source_row from ingest_matched where outcome = 'conflict'"
                )
                wh.load_arrow("ingest_conflict_texts", raw_rows([int(r[0]) for r in conflicted]))
            wh.execute(
                f"""
                create temporary table ingest_all_rejects as
                select row_number, raw_row, reason, message from ingest_stage_rejects
                union all
                select m.source_row, x.raw_row, 'conflict',
                    {key_text(spec, "m.")} || ' is already loaded with a different ' || m.differing
                from ingest_matched m left join ingest_conflict_texts x
                    on x.row_number = m.source_row
                where m.outcome = 'conflict'
                """
            )
            wh.execute(
                """
                insert into ingest_rejects (ingest_id, kind, source_file, file_sha256,
                    row_number, raw_row, reason, message, rejected_at)
                select %(ingest_id)s, %(kind)s, %(source_file)s, %(sha)s, r.row_number,
                    r.raw_row, r.reason, r.message, %(now)s
                from ingest_all_rejects r
                where not exists (
                    select 1 from ingest_rejects x
                    where x.kind = %(kind)s and x.file_sha256 = %(sha)s
                        and x.row_number = r.row_number and x.reason = r.reason
                )
                """,
                p,
            )
            if spec.fill_in and outcomes.get("updated"):
                key_match = " and ".join(f"{spec.table}.{k} = c.{k}" for k in spec.key)
                wh.execute(
                    f"""
                    update {spec.table} set {spec.fill_in} = c.{spec.fill_in},
                        labelled_at = %(now)s
                    from ingest_matched c where {key_match} and c.outcome = 'updated'
                    """,
                    {"now": audit.now},
                )
            labelled = (
                (", labelled_at", f", case when {spec.fill_in} is not null then %(now)s end")
                if spec.fill_in
                else ("", "")
            )
            matched = sum(outcomes.values())
            new_only = ""
            if matched:
                same_key = " and ".join(f"m.{k} = s.{k}" for k in spec.key)
                new_only = f" where not exists (select 1 from ingest_matched m where {same_key})"
            wh.execute(
                f"""
                insert into {spec.table} ({cols}, ingest_id, source_row, loaded_at{labelled[0]})
                select {cols}, %(ingest_id)s, source_row, %(now)s{labelled[1]}
                from ingest_stage s{new_only}
                """,
                {"ingest_id": audit.ingest_id, "now": audit.now},
            )
            by_reason = _by_reason(wh)
            counts = MergeCounts(
                inserted=valid.num_rows - matched,
                unchanged=outcomes.get("unchanged", 0),
                updated=outcomes.get("updated", 0),
                rejected=sum(r.rows for r in by_reason),
                by_reason=by_reason,
            )
            wh.execute(
                """
                insert into ingest_runs (ingest_id, kind, source_file, file_sha256, file_format,
                    ignored_columns, rows_in_file, rows_inserted, rows_updated, rows_unchanged,
                    rows_rejected, started_at, finished_at)
                values (%(ingest_id)s, %(kind)s, %(source_file)s, %(sha)s, %(format)s,
                    %(ignored)s, %(rows)s, %(inserted)s, %(updated)s, %(unchanged)s,
                    %(rejected)s, %(started)s, %(finished)s)
                """,
                {
                    **{k: v for k, v in p.items() if k != "now"},
                    "format": audit.file_format,
                    "ignored": audit.ignored_columns,
                    "rows": audit.rows_in_file,
                    "inserted": counts.inserted,
                    "updated": counts.updated,
                    "unchanged": counts.unchanged,
                    "rejected": counts.rejected,
                    "started": audit.started_at,
                    # `now` is the rows' loaded_at, which a caller may set; this is the clock.
                    "finished": datetime.now(UTC).replace(tzinfo=None),
                },
            )
            for table in (
                "ingest_all_rejects",
                "ingest_conflict_texts",
                "ingest_matched",
                "ingest_stage_rejects",
            ):
                wh.execute(f"drop table {table}")
            if not isinstance(wh, DuckDBWarehouse):
                wh.execute("drop table ingest_stage")
        finally:
            # A failed transaction takes its temporary tables with it; the Arrow view is ours.
            if isinstance(wh, DuckDBWarehouse):
                wh.connection.unregister("ingest_stage")
    return counts


def _by_reason(wh: Warehouse) -> tuple[ReasonCount, ...]:
    rows = wh.fetchall(
        f"""
        select reason, total, row_number from (
            select reason, row_number,
                count(*) over (partition by reason) as total,
                row_number() over (partition by reason order by row_number) as nth
            from ingest_all_rejects
        ) ranked
        where nth <= {_FIRST_ROWS}
        order by total desc, reason, row_number
        """
    )
    grouped: dict[str, tuple[int, list[int]]] = {}
    for reason, total, row_number in rows:  # at most _FIRST_ROWS per reason, not per file row
        grouped.setdefault(reason, (int(total), []))[1].append(int(row_number))
    return tuple(ReasonCount(r, n, tuple(first)) for r, (n, first) in grouped.items())
