"""Reading one input file (CSV or Parquet) into an in-memory DuckDB, set-based, with row numbers.

Owns the file-level errors (missing, empty, unparseable, required columns absent) and the CSV
parser's rejects (wrong field count, bad quoting, bad encoding). It does not judge values.

Row numbers: 1 is the first data row after the header. For CSV this is the CSV parser's line
number minus one, so it is the physical line minus one unless a quoted field spans lines (such a
row counts once); blank lines are skipped but counted. Parquet rows are numbered from 1.
raw_row is the parser's own text for a malformed row and the fields re-joined as CSV otherwise.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from runner.errors import IngestFileError
from runner.ingest.specs import Spec

FileFormat = Literal["csv", "parquet"]

# Priority of the CSV parser's error types when one line has several (lowest wins).
_PARSER_REASON = """
    case error_type
        when 'INVALID ENCODING' then {'p': 1, 'code': 'invalid_encoding',
            'message': 'the row is not valid UTF-8 text'}
        when 'UNQUOTED VALUE' then {'p': 2, 'code': 'malformed_row',
            'message': 'the row has an unterminated or misplaced quote (a quote left open runs'
                || ' to the end of the file)'}
        when 'MISSING COLUMNS' then {'p': 3, 'code': 'malformed_row',
            'message': format('the row has {} fields, the header has {}',
                regexp_extract(error_message, 'Found: (\\d+)', 1), $width)}
        when 'TOO MANY COLUMNS' then {'p': 3, 'code': 'malformed_row',
            'message': format('the row has more fields than the header''s {}', $width)}
        else {'p': 4, 'code': 'malformed_row', 'message': lower(error_type) || ': ' || error_message}
    end
"""
_RAW_LINE = "replace(trim(csv_line, chr(10) || chr(13)), chr(0), '')"


@dataclass(frozen=True)
class SourceFile:
    """What the reader learnt about a file; its rows are in the tables `src` and `parser_rejects`."""

    path: str
    sha256: str
    format: FileFormat
    ignored_columns: tuple[str, ...]
    data_rows: int


def read_source(con: Any, path: Path, spec: Spec) -> SourceFile:
    """Fill `src` (row_number, raw_row, raw_<field>…) and `parser_rejects` from `path`."""
    path = path.expanduser().resolve()
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise IngestFileError(f"{path} {what}; give the path of a CSV or Parquet file.")
    if path.stat().st_size == 0:
        raise IngestFileError(
            f"{path} is empty (0 bytes); expected a header naming {_listed(spec.required)}."
        )
    with path.open("rb") as fh:
        is_parquet = fh.read(4) == b"PAR1"
    if is_parquet:
        names = _load_parquet(con, path)
        fmt: FileFormat = "parquet"
    else:
        names = _csv_header(path)
        fmt = "csv"
    positions = _match_columns(path, names, spec)
    if fmt == "csv":
        _load_csv(con, path, len(names))
    _project(con, spec, positions)
    row = con.execute("select (select count(*) from src) + (select count(*) from parser_rejects)")
    ignored = tuple(n for i, n in enumerate(names) if i not in positions.values())
    return SourceFile(str(path), _sha256(path), fmt, ignored, int(row.fetchone()[0]))


def _listed(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(names)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class _Layout:
    """Where the records of a CSV file are, found from its bytes alone (RFC 4180 quoting)."""

    records: int  # after the header, blank lines included (the reader's line numbers count them)
    blank: list[int]  # data row numbers of blank lines, which the reader skips silently
    open_quote_line: int | None  # physical line of a quote never closed


def _layout(path: Path) -> _Layout:
    """A newline ends a record when an even number of quotes precedes it (vectorised, numpy)."""
    import numpy as np

    data = np.fromfile(path, dtype=np.uint8)
    newlines = np.flatnonzero(data == ord("\n"))
    quotes = np.flatnonzero(data == ord('"'))
    ends = newlines[np.searchsorted(quotes, newlines) % 2 == 0]
    starts = np.concatenate(([0], ends + 1))
    stops = np.concatenate((ends, [data.size]))
    if starts[-1] == data.size:  # the file ends with a newline: no record after it
        starts, stops = starts[:-1], stops[:-1]
    length = stops - starts
    blank = (length == 0) | ((length == 1) & (data[np.minimum(starts, data.size - 1)] == ord("\r")))
    open_quote = None
    if quotes.size % 2 == 1:
        open_quote = int(np.searchsorted(newlines, starts[-1])) + 1
    return _Layout(
        records=int(starts.size) - 1,
        blank=[int(i) for i in np.flatnonzero(blank[1:]) + 1],
        open_quote_line=open_quote,
    )


def _csv_header(path: Path) -> list[str]:
    with path.open("rb") as fh:
        first = fh.readline(1 << 20)
    try:
        text = first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        raise IngestFileError(
            f"The header line of {path} is not UTF-8 text; save the file as UTF-8 CSV."
        ) from None
    if not text.strip():
        raise IngestFileError(f"The first line of {path} is blank; it must be the header row.")
    try:
        return next(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise IngestFileError(f"The header line of {path} is not valid CSV ({exc}).") from None


def _match_columns(path: Path, names: list[str], spec: Spec) -> dict[str, int]:
    """Spec field -> position in the file; header names match case- and space-insensitively."""
    normalised = [n.strip().lower() for n in names]
    repeated = sorted({n for n in normalised if normalised.count(n) > 1})
    if repeated:
        raise IngestFileError(f"The header of {path} repeats the column(s) {_listed(repeated)}.")
    missing = [c for c in spec.required if c not in normalised]
    if missing:
        hint = " (is it comma-separated?)" if len(names) == 1 else ""
        raise IngestFileError(
            f"{path} lacks the required column(s) {_listed(missing)}{hint}; "
            f"found {_listed(names) or 'no columns'}."
        )
    return {c: normalised.index(c) for c in spec.columns if c in normalised}


def _read_csv_sql(width: int) -> str:
    # Explicit dialect and column list: the sniffer would otherwise guess from the bad lines.
    cols = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(width))
    return (
        "select * from read_csv($path, header = true, auto_detect = false, delim = ',',"
        " quote = '\"', escape = '\"', strict_mode = true, store_rejects = true,"
        " rejects_table = 'csv_rejects', rejects_scan = 'csv_scan',"
        f" columns = {{{cols}}})"
    )


def _load_csv(con: Any, path: Path, width: int) -> None:
    """Parse with DuckDB into `parsed_numbered` (row_number, raw_row, c0…) and `parser_rejects`.

    The reader reports the line of a row it rejects, never of a row it accepts. Its lines count
    records (a quoted field spanning lines counts once) and blank lines, so accepted rows fill
    the gaps left by rejected and blank lines, in order. The record count from the file's bytes
    checks that no row went missing (the reader can drop one after a quote left open).
    """
    try:
        con.execute(f"create table parsed as {_read_csv_sql(width)}", {"path": str(path)})
    except Exception as exc:  # duckdb.Error: a file DuckDB cannot read at all
        first = str(exc).strip().splitlines()[0]
        raise IngestFileError(f"{path} cannot be read as CSV ({first}).") from None
    con.execute(
        f"""
        create table parser_rejects as
        select line - 1 as row_number, arg_min({_RAW_LINE}, r.p) as raw_row,
               arg_min(r.code, r.p) as reason, arg_min(r.message, r.p) as message
        from (select *, {_PARSER_REASON} as r from csv_rejects)
        group by line
        """,
        {"width": width},
    )
    layout = _layout(path)
    con.execute(
        """
        create table row_lines as
        select row_number() over (order by n) as k, n as row_number
        from range(1, $records + 1) rows(n)
        where n not in (select row_number from parser_rejects)
            and n not in (select unnest($blank::bigint[]))
        """,
        {"records": layout.records, "blank": layout.blank},
    )
    parsed, numbered, rejected = con.execute(
        "select (select count(*) from parsed), (select count(*) from row_lines),"
        " (select count(*) from parser_rejects)"
    ).fetchone()
    if parsed != numbered:
        if layout.open_quote_line:
            raise IngestFileError(
                f"A quote opened on line {layout.open_quote_line} of {path} is never closed; "
                "fix the file and ingest it again (nothing was loaded)."
            )
        raise IngestFileError(
            f"{path} could not be split into rows reliably ({layout.records - len(layout.blank)} "
            f"by its line breaks, {parsed} read and {rejected} rejected by the CSV reader); "
            "check it for stray quotes."
        )
    con.execute(
        f"""
        create table parsed_numbered as
        select l.row_number, {_csv_render(width)} as raw_row, p.* exclude (k)
        from (select row_number() over (order by rowid) as k, * from parsed) p
        join row_lines l using (k)
        """
    )


def _load_parquet(con: Any, path: Path) -> list[str]:
    try:
        names = [
            d[0]
            for d in con.execute(
                "select * from read_parquet($path) limit 0", {"path": str(path)}
            ).description
        ]
        positional = ", ".join(f"cast({_ident(n)} as varchar) as c{i}" for i, n in enumerate(names))
        con.execute(
            f"""
            create table parsed_numbered as
            select file_row_number + 1 as row_number, {_csv_render(len(names))} as raw_row, *
            from (
                select file_row_number, {positional}
                from read_parquet($path, file_row_number = true)
            )
            """,
            {"path": str(path)},
        )
    except Exception as exc:  # duckdb.Error: corrupt or truncated Parquet
        first = str(exc).strip().splitlines()[0]
        raise IngestFileError(f"{path} cannot be read as Parquet ({first}).") from None
    con.execute(
        "create table parser_rejects (row_number bigint, raw_row varchar, reason varchar,"
        " message varchar)"
    )
    return names


def _ident(name: str) -> str:
    """A Parquet column name (user data) as a safely quoted DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def _csv_render(width: int) -> str:
    """SQL rendering c0..c{width-1} as one CSV line, for the raw text of a Parquet row."""
    fields = [
        f"""case when regexp_matches(c{i}, '[",\\r\\n]') then '"' || replace(c{i}, '"', '""')"""
        f""" || '"' else coalesce(c{i}, '') end"""
        for i in range(width)
    ]
    return " || ',' || ".join(fields) if fields else "''"


def _project(con: Any, spec: Spec, positions: dict[str, int]) -> None:
    cols = ", ".join(
        f"c{positions[f]} as raw_{f}" if f in positions else f"null::varchar as raw_{f}"
        for f in spec.columns
    )
    con.execute(
        f"create table src as select row_number, raw_row, {cols} from parsed_numbered"
        " order by row_number"
    )
