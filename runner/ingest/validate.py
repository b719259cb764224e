"""Judging the rows of `src` in SQL: typing, domain checks, and duplicate keys within the file.

Leaves two tables in the in-memory DuckDB: `valid` (typed rows ready to merge, one per key) and
`rejects` (one reason per rejected row, parser rejects included). It never sees the warehouse,
so conflicts with rows loaded earlier are merge.py's job.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from runner.errors import ConfigError
from runner.ingest.specs import Field, Spec

# ISO-8601 date or date-time, optional fraction and offset; DuckDB's cast alone accepts more
# (time-zone names, 'infinity', 'epoch').
_ISO_8601 = r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?([Zz]|[+-]\d{2}(:?\d{2})?)?"


def _present(f: Field) -> str:
    return f"trim(coalesce(raw_{f.name}, '')) <> ''"


def _typed(f: Field) -> str:
    raw, clean = f"raw_{f.name}", f"trim(raw_{f.name})"
    if f.type == "number":
        return (
            f"case when isfinite(try_cast({clean} as double)) then try_cast({clean} as double) end"
        )
    if f.type == "timestamp":
        # The connection's TimeZone is UTC: no offset means UTC; an offset is converted to UTC.
        return (
            f"case when regexp_full_match({clean}, '{_ISO_8601}')"
            f" then try_cast({clean} as timestamptz) at time zone 'UTC' end"
        )
    if f.type == "label":
        return f"case when try_cast({clean} as double) in (0, 1) then try_cast({clean} as double)::integer end"
    if f.type == "choice":
        allowed = ", ".join(f"'{c}'" for c in f.choices)
        return f"case when {raw} in ({allowed}) then {raw} end"
    return f"case when {_present(f)} then {raw} end"


_INVALID = {
    "number": ("invalid_number", "is not a number"),
    "timestamp": ("invalid_timestamp", "is not ISO-8601"),
    "label": ("invalid_label", "must be 0 or 1"),
}


def _field_failures(f: Field) -> list[tuple[str, str, str]]:
    """(code, condition, message SQL) for a field's emptiness and type, in that order."""
    shown = f"'{f.name} ''' || left(raw_{f.name}, 60) || ''' '"
    out = []
    if f.required:
        out.append(("missing_value", f"not ({_present(f)})", f"'{f.name} is empty'"))
    if f.type == "choice":
        out.append(
            (
                "invalid_value",
                f"{_present(f)} and {f.name} is null",
                f"{shown} || 'must be {' or '.join(f.choices)}'",
            )
        )
    elif f.type in _INVALID:
        code, words = _INVALID[f.type]
        out.append((code, f"{_present(f)} and {f.name} is null", f"{shown} || '{words}'"))
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


def validate(con: Any, spec: Spec, now: datetime) -> None:
    """Create `valid` and `rejects` from `src` and `parser_rejects`."""
    typed = ", ".join(f"{_typed(f)} as {f.name}" for f in spec.fields)
    rules = [r for f in spec.fields for r in _field_failures(f)]
    rules += [(c.code, c.bad, c.message) for c in spec.checks]
    nul_bytes = " or ".join(f"contains(raw_{f.name}, chr(0))" for f in spec.fields)
    failure = "\n".join(
        f"when {cond} then {{'code': '{code}', 'message': {msg}}}" for code, cond, msg in rules
    )
    con.execute(f"create table typed as select *, {typed} from src")
    con.execute(
        f"""
        create table judged as
        select *, case
            when {nul_bytes} then {{'code': 'invalid_encoding', 'message': 'the row contains a NUL byte'}}
            {failure}
        end as failure
        from typed
        """,
        {"now": now},
    )
    values = ", ".join(
        f"coalesce({f.name}, {f.default}) as {f.name}" if f.default else f.name for f in spec.fields
    )
    keys = ", ".join(spec.key)
    struct = ", ".join(f"{c} := {c}" for c in spec.columns)
    con.execute(
        f"""
        create table passed as
        select {values}, row_number, raw_row from judged where failure is null
        """
    )
    # Keys seen more than once: the group tells duplicates (one distinct row) from conflicts.
    con.execute(
        f"""
        create table repeated_keys as
        select {keys}, count(distinct struct_pack({struct})) > 1 as key_differs,
            min(row_number) as first_row,
            list(row_number order by row_number)[1:10] as key_row_numbers
        from passed group by {keys} having count(*) > 1
        """
    )
    con.execute(
        f"""
        create table keyed as
        select p.*, r.key_differs, r.first_row, r.key_row_numbers, r.first_row is not null as repeated
        from passed p left join repeated_keys r using ({keys})
        """
    )
    cols = ", ".join(spec.columns)
    con.execute(
        f"""
        create table valid as
        select {cols}, row_number as source_row, raw_row from keyed
        where not repeated or (not key_differs and row_number = first_row)
        order by row_number
        """
    )
    con.execute(
        f"""
        create table rejects as
        select row_number, raw_row, reason, message from parser_rejects
        union all
        select row_number, raw_row, failure.code, failure.message from judged
        where failure is not null
        union all
        select row_number, raw_row,
            case when key_differs then 'conflict' else 'duplicate' end,
            case when key_differs
                then {key_text(spec)} || ' appears with different values on rows '
                    || array_to_string(key_row_numbers, ', ')
                    || ' of this file; none of them is loaded'
                else 'identical copy of row ' || first_row || ' (' || {key_text(spec)} || ')'
            end
        from keyed
        where repeated and (key_differs or row_number <> first_row)
        """
    )
