"""Reading one input file (CSV or Parquet) into an in-memory DuckDB, set-based, with row numbers.

Owns the file-level errors (missing, empty, unparseable, required columns absent) and the CSV
parser's rejects (wrong field count, bad quoting, bad encoding). It does not judge values: the
caller (validate.py) supplies the select list that types and judges each row, and the reader runs
it in the one pass that reads the file, into the table `judged`; nothing else of the full file's
width is materialised.

Row numbers: 1 is the first data row after the header. For CSV this is the CSV parser's line
number minus one, so it is the physical line minus one unless a quoted field spans lines (such a
row counts once); blank lines are skipped but counted. Parquet rows are numbered from 1.
raw_row is the parser's own text for a malformed row and the fields re-joined as CSV otherwise.
It is rendered only for rows that end up rejected: inline for a row the validator rejects, and by
reading those rows again (`raw_rows`) for duplicates and merge conflicts.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from runner.errors import IngestFileError
from runner.ingest.specs import Spec

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

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
_CHUNK = 1 << 26  # bytes of a CSV file scanned at a time for its record layout

# Given the DuckDB type of each column of the file (c0, c1, …; VARCHAR for CSV) and the columns
# to keep as they are (e.g. "row_number, "), the query typing and judging the rows of the
# relation `_source_`: supplied by validate.py.
JudgeSql = Callable[[list[str], str], str]


@dataclass(frozen=True)
class SourceFile:
    """What the reader learnt about a file; its judged rows are in `numbered` and `parser_rejects`."""

    path: str
    sha256: str
    format: FileFormat
    ignored_columns: tuple[str, ...]
    data_rows: int
    names: tuple[str, ...] = ()
    size: int = 0
    mtime_ns: int = 0
    ordered: bool = True  # whether `numbered` lists the rows in file order


@dataclass(frozen=True)
class Opened:
    """A file whose header is known: its columns and where each spec field is."""

    path: Path
    format: FileFormat
    names: list[str]
    types: list[str]
    positions: dict[str, int]


def open_source(con: Any, path: Path, spec: Spec) -> Opened:
    """Check the file and its header; raises IngestFileError."""
    path = path.expanduser().resolve()
    try:
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise IngestFileError(f"{path} {what}; give the path of a CSV or Parquet file.")
        size = path.stat().st_size
        with path.open("rb") as fh:
            is_parquet = fh.read(4) == b"PAR1"
    except OSError as exc:  # a name too long, no permission: the path, not the engine
        raise IngestFileError(
            f"{path} cannot be opened ({exc.strerror}); give the path of a readable CSV or "
            "Parquet file."
        ) from None
    if size == 0:
        raise IngestFileError(
            f"{path} is empty (0 bytes); expected a header naming {_listed(spec.required)}."
        )
    if is_parquet:
        names, types = _parquet_columns(con, path)
        fmt: FileFormat = "parquet"
    else:
        names = _csv_header(path)
        types = ["VARCHAR"] * len(names)
        fmt = "csv"
    return Opened(path, fmt, names, types, _match_columns(path, names, spec))


def read_source(con: Any, opened: Opened, judge: JudgeSql) -> SourceFile:
    """Read the file once into `judged` (the `judge` select list), then number its rows.

    Leaves the view `numbered` (row_number, judged columns…) and the table `parser_rejects`.
    """
    path = opened.path
    width = len(opened.names)
    if opened.format == "parquet":
        positional = ", ".join(f"{_ident(n)} as c{i}" for i, n in enumerate(opened.names))
        try:
            con.execute(
                f"""
                create table judged as
                with _source_ as (
                    select file_row_number + 1 as row_number, {positional}
                    from read_parquet($path, file_row_number = true)
                )
                {judge(opened.types, "row_number, ")}
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
        con.execute("create view numbered as select * from judged")
        ordered = True
    else:
        ordered = _load_csv(con, path, width, judge(opened.types, ""))
    row = con.execute(
        "select (select count(*) from judged) + (select count(*) from parser_rejects)"
    )
    ignored = tuple(n for i, n in enumerate(opened.names) if i not in opened.positions.values())
    stat = path.stat()
    return SourceFile(
        str(path),
        _sha256(path),
        opened.format,
        ignored,
        int(row.fetchone()[0]),
        tuple(opened.names),
        stat.st_size,
        stat.st_mtime_ns,
        ordered,
    )


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


def _record_chunks(path: Path) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(starts, stops, blank) of the file's records, in chunks; record 0 is the header.

    A newline ends a record when an even number of quotes precedes it (vectorised, numpy, read
    in chunks so that memory stays flat whatever the file's size).
    """
    import numpy as np

    quotes_before = 0
    start = 0  # of the record in progress
    last_byte = -1  # the byte before the current chunk
    offset = 0
    with path.open("rb") as fh:
        while True:
            data = np.frombuffer(fh.read(_CHUNK), dtype=np.uint8)
            if data.size == 0:
                break
            newlines = np.flatnonzero(data == ord("\n"))
            quotes = np.flatnonzero(data == ord('"'))
            even = (quotes_before + np.searchsorted(quotes, newlines)) % 2 == 0
            ends = newlines[even] + offset
            quotes_before += int(quotes.size)
            if ends.size:
                starts = np.concatenate(([start], ends[:-1] + 1))
                before_end = np.where(
                    ends - 1 >= offset, data[np.maximum(ends - 1 - offset, 0)], last_byte
                )
                length = ends - starts
                blank = (length == 0) | ((length == 1) & (before_end == ord("\r")))
                yield starts, ends, blank
                start = int(ends[-1]) + 1
            last_byte = int(data[-1])
            offset += int(data.size)
    if start < offset:  # a last record without a newline
        import numpy as np

        length = offset - start
        blank = length == 1 and last_byte == ord("\r")
        yield np.array([start]), np.array([offset]), np.array([blank])
    if quotes_before % 2 == 1:
        raise _OpenQuote(start)


class _OpenQuote(Exception):
    def __init__(self, start: int) -> None:
        self.start = start


def _layout(path: Path) -> _Layout:
    import numpy as np

    records = 0
    blank: list[int] = []
    open_quote = None
    try:
        for starts, _, blanks in _record_chunks(path):
            blank.extend(int(i) + records for i in np.flatnonzero(blanks))
            records += int(starts.size)
    except _OpenQuote as exc:
        open_quote = _physical_line(path, exc.start)
    return _Layout(
        records=records - 1, blank=[b for b in blank if b > 0], open_quote_line=open_quote
    )


def _physical_line(path: Path, position: int) -> int:
    """1 + the number of newlines before byte `position`."""
    lines = 1
    with path.open("rb") as fh:
        while position > 0:
            chunk = fh.read(min(_CHUNK, position))
            if not chunk:
                break
            lines += chunk.count(b"\n")
            position -= len(chunk)
    return lines


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


def _load_csv(con: Any, path: Path, width: int, select: str) -> bool:
    """Parse and judge with DuckDB into `judged`, fill `parser_rejects`, and number the rows.

    The reader reports the line of a row it rejects, never of a row it accepts. Its lines count
    records (a quoted field spanning lines counts once) and blank lines, so accepted rows fill
    the gaps left by rejected and blank lines, in order (`judged` keeps the file's order: its
    rowid is the accepted row's rank). The record count from the file's bytes checks that no row
    went missing (the reader can drop one after a quote left open).
    """
    try:
        con.execute(
            f"create table judged as with _source_ as ({_read_csv_sql(width)}) {select}",
            {"path": str(path)},
        )
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
    parsed, rejected = con.execute(
        "select (select count(*) from judged), (select count(*) from parser_rejects)"
    ).fetchone()
    gaps = rejected + len(layout.blank)
    if parsed + gaps != layout.records:
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
    if gaps == 0:  # the common case: the k-th accepted row is row k
        con.execute("create view numbered as select rowid + 1 as row_number, * from judged")
        return True
    # Row k (1-based rank among accepted rows) is k plus the number of gaps before it. A gap
    # (rejected or blank line) numbered g, being the i-th gap, comes after g - i accepted rows.
    con.execute(
        """
        create table gaps as
        select n - row_number() over (order by n) as accepted_before, count(*) over (order by n) as i
        from (
            select row_number as n from parser_rejects
            union
            select unnest($blank::bigint[])
        )
        """,
        {"blank": layout.blank},
    )
    con.execute(
        """
        create table gap_steps as
        select accepted_before, max(i) as i from gaps group by accepted_before
        """
    )
    con.execute(
        """
        create view numbered as
        select j.rowid + 1 + coalesce(g.i, 0) as row_number, j.*
        from judged j asof left join gap_steps g on j.rowid + 1 > g.accepted_before
        """
    )
    return False


def _parquet_columns(con: Any, path: Path) -> tuple[list[str], list[str]]:
    try:
        rows = con.execute(
            "select column_name, column_type from (describe select * from read_parquet($path))",
            {"path": str(path)},
        ).fetchall()
    except Exception as exc:  # duckdb.Error: corrupt or truncated Parquet
        first = str(exc).strip().splitlines()[0]
        raise IngestFileError(f"{path} cannot be read as Parquet ({first}).") from None
    return [str(r[0]) for r in rows], [str(r[1]) for r in rows]


def _ident(name: str) -> str:
    """A Parquet column name (user data) as a safely quoted DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def csv_render(fields: list[str]) -> str:
    """SQL rendering the varchar expressions `fields` as one CSV line, for a row's raw text.

    NUL bytes are left out, as in the parser's rejects: PostgreSQL text cannot hold them."""
    rendered = [
        f"""case when regexp_matches({f}, '[",\\r\\n]') then '"' || replace({f}, '"', '""')"""
        f""" || '"' else coalesce({f}, '') end"""
        for f in fields
    ]
    if not rendered:
        return "''"
    return "replace(" + " || ',' || ".join(rendered) + ", chr(0), '')"


def _render(fields: list[str]) -> str:
    """The Python twin of `csv_render`."""
    return ",".join(
        '"' + f.replace('"', '""') + '"' if any(c in f for c in '",\r\n') else f for f in fields
    ).replace("\x00", "")


def raw_rows(source: SourceFile, row_numbers: list[int]) -> pa.Table:
    """(row_number, raw_row) of accepted rows of the file, read again; raw_row is null if the
    file changed since it was read (only rejected rows need it: duplicates, merge conflicts)."""
    import pyarrow as pa

    wanted = sorted(set(row_numbers))
    path = Path(source.path)
    stat = path.stat() if path.is_file() else None
    unchanged = stat is not None and (stat.st_size, stat.st_mtime_ns) == (
        source.size,
        source.mtime_ns,
    )
    if not wanted or not unchanged:
        texts: dict[int, str] = {}
    elif source.format == "parquet":
        texts = _parquet_rows(path, source.names, wanted)
    else:
        texts = _csv_rows(path, wanted)
    return pa.table(
        {
            "row_number": pa.array(wanted, pa.int64()),
            "raw_row": pa.array([texts.get(n) for n in wanted], pa.string()),
        }
    )


def _parquet_rows(path: Path, names: tuple[str, ...], wanted: list[int]) -> dict[int, str]:
    import duckdb
    import pyarrow as pa

    con = duckdb.connect(":memory:")
    try:
        con.execute("set enable_progress_bar = false")
        con.execute("set TimeZone = 'UTC'")
        con.register("wanted_rows", pa.table({"n": pa.array(wanted, pa.int64())}))
        fields = [f"cast({_ident(n)} as varchar)" for n in names]
        rows = con.execute(
            f"""
            select file_row_number + 1, {csv_render(fields)}
            from read_parquet($path, file_row_number = true)
            where file_row_number + 1 in (select n from wanted_rows)
            """,
            {"path": str(path)},
        ).fetchall()
    finally:
        con.close()
    return {int(n): str(text) for n, text in rows}


def _csv_rows(path: Path, wanted: list[int]) -> dict[int, str]:
    """The records numbered `wanted` (row 1 is the first after the header), re-joined as CSV."""
    import numpy as np

    spans: list[tuple[int, int, int]] = []
    first = 0  # record number of the chunk's first record
    targets = np.array(wanted, dtype=np.int64)
    for starts, stops, _ in _record_chunks_lenient(path):
        hit = targets[(targets >= first) & (targets < first + starts.size)]
        spans += [(int(n), int(starts[n - first]), int(stops[n - first])) for n in hit]
        first += int(starts.size)
    out: dict[int, str] = {}
    with path.open("rb") as fh:
        for n, begin, end in spans:
            fh.seek(begin)
            text = fh.read(end - begin).decode("utf-8", errors="replace")
            fields = next(csv.reader(io.StringIO(text, newline="")), [])
            out[n] = _render(fields)
    return out


def _record_chunks_lenient(path: Path) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    try:
        yield from _record_chunks(path)
    except _OpenQuote:
        return
