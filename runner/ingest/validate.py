"""Judging the rows of a file in SQL: typing, domain checks, and duplicate keys within the file.

`judge_sql` is the select list the reader runs in its one pass over the file: it types every
field and gives each row its `failure` (null, or the first failing rule's code and message and
the row's raw text, rendered only for a failing row). `validate` then leaves two relations in
the in-memory DuckDB: `valid` (typed rows ready to merge, one per key) and `rejects` (one reason
per rejected row, parser rejects included). It never sees the warehouse, so conflicts with rows
loaded earlier are merge.py's job.

Parquet columns of a native type (double, integer, timestamp) are typed directly; their meaning
is the same as the round trip through text that CSV fields take (the text is still what messages
and raw_row show).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from runner.errors import ConfigError
from runner.ingest.reader import JudgeSql, SourceFile, csv_render, raw_rows
from runner.ingest.specs import Field, Spec

# ISO-8601 date or date-time, optional fraction and offset; DuckDB's cast alone accepts more
# (time-zone names, 'infinity', 'epoch'). [0-9] rather than \d: the same in RE2, and faster.
_ISO_8601 = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?)?"
    r"([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)?"
)
_NUMERIC = {"DOUBLE", "BIGINT", "INTEGER", "SMALLINT", "TINYINT"}  # exact as double via text
_TIMESTAMP_RANGE = (
    "between timestamp '0001-01-01 00:00:00' and timestamp '9999-12-31 23:59:59.999999'"
)
_RAW = re.compile(r"\braw_(\w+)\b")


def _present(raw: str) -> str:
    """trim(coalesce(raw, '')) <> '', without trim's cost when the first character is visible
    ASCII (trim removes only space separators)."""
    return (
        f"(case when ascii({raw}) between 33 and 126 then true"
        f" else trim(coalesce({raw}, '')) <> '' end)"
    )


def _timestamp(text: str) -> str:
    """An ISO-8601 text (already matched) as naive UTC; the cheaper plain cast when it has no
    offset (the same value: no offset means UTC).

    DuckDB's casts refuse spellings the pattern accepts: a lower-case z, and an offset right
    after a date or an hh:mm time. So Z/z is dropped (no offset means UTC), and a time without
    seconds gets ':00' (a date alone, midnight) before its offset."""
    offset = (
        f"regexp_replace(regexp_replace({text}, '^([0-9-]{{10}})([+-])', '\\1 00:00:00\\2'),"
        f" '^(.{{10}}[T ][0-9]{{2}}:[0-9]{{2}})([+-])', '\\1:00\\2')"
    )
    return (
        f"case when strpos({text}, '+') = 0 and strpos(substr({text}, 11), '-') = 0"
        f" then try_cast(rtrim({text}, 'Zz') as timestamp)"
        f" else try_cast({offset} as timestamptz) at time zone 'UTC' end"
    )


class _Columns:
    """SQL for each field of a spec over the file's columns c0, c1, … of the given types."""

    def __init__(self, spec: Spec, positions: dict[str, int], types: list[str]) -> None:
        self.spec, self.positions, self.types = spec, positions, types

    def native(self, f: Field) -> str | None:
        """The DuckDB type of the field's column when it is not VARCHAR."""
        if f.name not in self.positions:
            return None
        kind = self.types[self.positions[f.name]]
        return None if kind == "VARCHAR" else kind

    def raw(self, name: str) -> str:
        """The field's text as the file gives it (a CSV field; a Parquet value cast to text)."""
        if name not in self.positions:
            return "null::varchar"
        i = self.positions[name]
        return f"c{i}" if self.types[i] == "VARCHAR" else f"cast(c{i} as varchar)"

    def present(self, f: Field) -> str:
        native = self.native(f)
        if native is not None and (native in _NUMERIC or native.startswith("TIMESTAMP")):
            return f"(c{self.positions[f.name]} is not null)"
        return _present(self.raw(f.name))

    def typed(self, f: Field) -> str:
        raw, native = self.raw(f.name), self.native(f)
        if f.type == "number" and native in _NUMERIC:
            col = f"c{self.positions[f.name]}::double"
            return f"case when isfinite({col}) then {col} end"
        if f.type == "timestamp" and native in ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE"):
            col = f"c{self.positions[f.name]}"
            if native != "TIMESTAMP":
                col = f"({col} at time zone 'UTC')"
            return f"case when {col} {_TIMESTAMP_RANGE} then {col} end"
        if f.type == "number":
            # A cast accepts the spaces trim removes, or fails; trim only when it fails.
            value = f"coalesce(try_cast({raw} as double), try_cast(trim({raw}) as double))"
            return f"case when isfinite({value}) then {value} end"
        if f.type == "timestamp":
            # The connection's TimeZone is UTC: no offset means UTC; an offset is converted to UTC.
            return (
                f"case when regexp_full_match({raw}, '{_ISO_8601}') then {_timestamp(raw)}"
                f" when regexp_full_match(trim({raw}), '{_ISO_8601}')"
                f" then {_timestamp(f'trim({raw})')} end"
            )
        if f.type == "label":
            clean = f"trim({raw})"
            return f"case when try_cast({clean} as double) in (0, 1) then try_cast({clean} as double)::integer end"
        if f.type == "choice":
            allowed = ", ".join(f"'{c}'" for c in f.choices)
            return f"case when {raw} in ({allowed}) then {raw} end"
        return f"case when {self.present(f)} then {raw} end"

    def inline_raw(self, sql: str) -> str:
        """`sql` with each raw_<field> replaced by the field's text expression."""
        return _RAW.sub(lambda m: self.raw(m.group(1)), sql)

    def text_fields(self) -> list[str]:
        """Fields whose text may hold a NUL byte (a native number or timestamp cannot)."""
        return [f.name for f in self.spec.fields if self.native(f) in (None, "VARCHAR")]


_INVALID = {
    "number": ("invalid_number", "is not a number"),
    "timestamp": ("invalid_timestamp", "is not ISO-8601"),
    "label": ("invalid_label", "must be 0 or 1"),
}


def _field_failures(f: Field, cols: _Columns) -> list[tuple[str, str, str]]:
    """(code, condition, message SQL) for a field's emptiness and type, in that order."""
    shown = f"'{f.name} ''' || left(raw_{f.name}, 60) || ''' '"
    out = []
    if f.required:
        out.append(("missing_value", f"not {cols.present(f)}", f"'{f.name} is empty'"))
    if f.type == "choice":
        out.append(
            (
                "invalid_value",
                f"{f.name} is null and {cols.present(f)}",
                f"{shown} || 'must be {' or '.join(f.choices)}'",
            )
        )
    elif f.type in _INVALID:
        code, words = _INVALID[f.type]
        out.append((code, f"{f.name} is null and {cols.present(f)}", f"{shown} || '{words}'"))
    return out


def key_text(spec: Spec, prefix: str = "") -> str:
    """SQL (valid in DuckDB and PostgreSQL) naming a row's key, e.g. trade_id 'T1'."""
    parts = [f"'{k} ''' || cast({prefix}{k} as varchar) || ''''" for k in spec.key]
    return " || ', ' || ".join(parts)


def load_components(con: Any, project: Path) -> None:
    """The declared components, from the dbt seed (the source of truth, not the warehouse)."""
    seed = project / "seeds" / "components.csv"
    if not seed.is_file():
        raise ConfigError(
            f"{seed} does not exist; declare the components there before ingesting trades."
        )
    try:
        con.execute(
            "create table components as select distinct component_id"
            " from read_csv($seed, header = true, all_varchar = true) where component_id is not null",
            {"seed": str(seed)},
        )
    except Exception as exc:  # duckdb.Error: no component_id column, unreadable seed
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{seed} has no readable component_id column ({first}).") from None


def judge_sql(spec: Spec, positions: dict[str, int], now: datetime) -> JudgeSql:
    """The select list typing and judging a row of the file, given its columns' types."""

    def judge(types: list[str], keep: str) -> str:
        cols = _Columns(spec, positions, types)
        width = len(types)
        rules = [r for f in spec.fields for r in _field_failures(f, cols)]
        rules += [(c.code, c.bad, c.message) for c in spec.checks]
        nul_bytes = " or ".join(f"contains({cols.raw(n)}, chr(0))" for n in cols.text_fields())
        raw_row = csv_render([_text(i, types) for i in range(width)])
        moment = f"timestamp '{now.isoformat(sep=' ')}'"
        failures = [
            (
                "invalid_encoding",
                nul_bytes or "false",
                "'the row contains a NUL byte'",
            ),
            *rules,
        ]
        failure = "\n".join(
            f"when {cond.replace('$now', moment)} then {{'code': '{code}',"
            f" 'message': {cols.inline_raw(msg)}, 'raw_row': {raw_row}}}"
            for code, cond, msg in failures
        )
        typed = ", ".join(f"{cols.typed(f)} as {f.name}" for f in spec.fields)
        names = ", ".join(f.name for f in spec.fields)
        file_cols = ", ".join(f"c{i}" for i in range(width))
        # Two levels: the typed values once per row, the rules over them; the raw text only in
        # the branches of a failing row.
        return f"""
            select {keep}{names}, case {failure} end as failure
            from (select {keep}{typed}, {file_cols} from _source_) _typed_
        """

    return judge


def _text(i: int, types: list[str]) -> str:
    return f"c{i}" if types[i] == "VARCHAR" else f"cast(c{i} as varchar)"


def validate(con: Any, spec: Spec, source: SourceFile) -> None:
    """Create the view `valid` and the table `rejects` from `numbered` and `parser_rejects`."""
    values = ", ".join(
        f"coalesce({f.name}, {f.default}) as {f.name}" if f.default else f.name for f in spec.fields
    )
    keys = ", ".join(spec.key)
    struct = ", ".join(f"{c} := {c}" for c in spec.columns)
    cols = ", ".join(spec.columns)
    con.execute(
        f"create view passed as select {values}, row_number from numbered where failure is null"
    )
    # Keys seen more than once, found on the keys alone; the details only for those keys.
    con.execute(
        f"create table repeated_keys as select {keys} from passed group by {keys} having count(*) > 1"
    )
    order = "" if source.ordered else " order by row_number"
    (repeated,) = con.execute("select count(*) from repeated_keys").fetchone()
    if not repeated:
        con.execute(
            f"create view valid as select {cols}, row_number as source_row from passed{order}"
        )
        con.execute(
            "create table rejects as select row_number, raw_row, reason, message from parser_rejects"
            " union all select row_number, failure.raw_row, failure.code, failure.message"
            " from numbered where failure is not null"
        )
        return
    # The group tells duplicates (one distinct row) from conflicts.
    con.execute(
        f"""
        create table keyed as
        select p.*, r.key_differs, r.first_row, r.key_row_numbers
        from passed p
        join (
            select {keys}, count(distinct struct_pack({struct})) > 1 as key_differs,
                min(row_number) as first_row,
                list(row_number order by row_number)[1:10] as key_row_numbers
            from passed semi join repeated_keys using ({keys})
            group by {keys}
        ) r using ({keys})
        """
    )
    con.execute(
        f"""
        create view valid as
        select {cols}, row_number as source_row from passed anti join repeated_keys using ({keys})
        union all
        select {cols}, row_number from keyed where not key_differs and row_number = first_row
        order by source_row
        """
    )
    con.execute(
        f"""
        create table key_rejects as
        select row_number,
            case when key_differs then 'conflict' else 'duplicate' end as reason,
            case when key_differs
                then {key_text(spec)} || ' appears with different values on rows '
                    || array_to_string(key_row_numbers, ', ')
                    || ' of this file; none of them is loaded'
                else 'identical copy of row ' || first_row || ' (' || {key_text(spec)} || ')'
            end as message
        from keyed
        where key_differs or row_number <> first_row
        """
    )
    rows = [int(r[0]) for r in con.execute("select row_number from key_rejects").fetchall()]
    con.register("key_reject_texts", raw_rows(source, rows))
    con.execute(
        """
        create table rejects as
        select row_number, raw_row, reason, message from parser_rejects
        union all
        select row_number, failure.raw_row, failure.code, failure.message
        from numbered where failure is not null
        union all
        select k.row_number, t.raw_row, k.reason, k.message
        from key_rejects k left join key_reject_texts t using (row_number)
        """
    )
    con.unregister("key_reject_texts")
