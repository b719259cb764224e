"""Validated bulk ingest of trades, predictions and bars files into the raw tables.

`ingest_file` reads and judges a file in an in-memory DuckDB (reader.py, validate.py), then
merges it into the warehouse in one transaction (merge.py). It returns an `IngestResult` and
never prints; the CLI decides how to show it and which exit code to use.

Decisions: unknown extra columns are ignored and listed as a warning; a header-only file loads
nothing and succeeds with a warning; a re-ingest is recorded in ingest_runs as its own run but
adds no raw rows and no duplicate rejects.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from runner.config import Settings
from runner.ingest.merge import Audit, merge_file
from runner.ingest.reader import SourceFile, open_source, raw_rows, read_source
from runner.ingest.result import IngestResult, ReasonCount
from runner.ingest.specs import SPECS, Kind, Spec
from runner.ingest.validate import judge_sql, load_components, validate
from runner.warehouse import Warehouse

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["IngestResult", "Kind", "PreparedFile", "ReasonCount", "ingest_file", "load", "prepare"]


@dataclass(frozen=True)
class PreparedFile:
    """A file read and judged in memory, not yet written anywhere."""

    spec: Spec
    source: SourceFile
    valid: pa.Table
    rejects: pa.Table
    started_at: datetime
    now: datetime


def utc_now() -> datetime:
    """The warehouse stores naive UTC timestamps."""
    return datetime.now(UTC).replace(tzinfo=None)


def prepare(
    settings: Settings, kind: Kind, path: Path, now: datetime | None = None
) -> PreparedFile:
    """Read and validate `path` without touching the warehouse; raises IngestFileError."""
    import duckdb

    started = utc_now()
    now = now or started
    spec = SPECS[Kind(kind)]
    con = duckdb.connect(":memory:")
    con.execute("set enable_progress_bar = false")
    try:
        con.execute("set TimeZone = 'UTC'")
        opened = open_source(con, path, spec)
        if spec.kind is Kind.trades:
            load_components(con, settings.project)
        source = read_source(con, opened, judge_sql(spec, opened.positions, now))
        validate(con, spec, source)
        valid = con.execute("select * from valid").to_arrow_table()
        rejects = con.execute("select * from rejects order by row_number").to_arrow_table()
    finally:
        con.close()
    return PreparedFile(spec, source, valid, rejects, started, now)


def load(wh: Warehouse, prepared: PreparedFile) -> IngestResult:
    """Merge a prepared file into the warehouse atomically and report what happened."""
    source, spec = prepared.source, prepared.spec
    audit = Audit(
        ingest_id=uuid.uuid4().hex,
        kind=spec.kind.value,
        source_file=source.path,
        file_sha256=source.sha256,
        file_format=source.format,
        rows_in_file=source.data_rows,
        ignored_columns=", ".join(source.ignored_columns) or None,
        started_at=prepared.started_at,
        now=prepared.now,
    )
    counts = merge_file(
        wh, spec, audit, prepared.valid, prepared.rejects, lambda rows: raw_rows(source, rows)
    )
    warnings = []
    if source.ignored_columns:
        warnings.append(f"ignored unknown column(s): {', '.join(source.ignored_columns)}")
    if source.data_rows == 0:
        warnings.append("the file has a header but no data rows")
    return IngestResult(
        ingest_id=audit.ingest_id,
        kind=audit.kind,
        source_file=source.path,
        file_sha256=source.sha256,
        file_format=source.format,
        rows_in_file=source.data_rows,
        inserted=counts.inserted,
        unchanged=counts.unchanged,
        updated=counts.updated,
        rejected=counts.rejected,
        rejects_by_reason=counts.by_reason,
        ignored_columns=source.ignored_columns,
        warnings=tuple(warnings),
    )


def ingest_file(
    wh: Warehouse, settings: Settings, kind: Kind, path: Path, now: datetime | None = None
) -> IngestResult:
    """Read, validate and merge one file; `now` (naive UTC) bounds 'not in the future'."""
    return load(wh, prepare(settings, kind, path, now))
