"""docs/data-model.md against a freshly migrated warehouse: every table and view the runner
creates has a section, and every column a row with its type and nullability; every dbt mart and
seed is listed with the YAML that documents its columns.

dbt is not run here: its relations are checked against their YAML, not against the warehouse.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from runner.warehouse import Warehouse, connect
from runner.warehouse.migrations import migrate
from tests.python.scenarios import PROJECT_DIR, fresh_settings

DOC = PROJECT_DIR / "docs" / "data-model.md"

# "### `name`" or "### `name` (view)": one section per runner relation.
_SECTION = re.compile(r"^### `(?P<name>\w+)`(?P<view> \(view\))?$")
# "| `column` | `type` [not null] | meaning |": one row per column.
_COLUMN = re.compile(
    r"^\| `(?P<name>\w+)` \| `(?P<type>[a-z ]+)`(?P<not_null> not null)? \| (?P<meaning>.*) \|$"
)
_PLACEHOLDERS = {"TODO", "TBD", "FIXME", "SEE ABOVE"}
# information_schema.columns.data_type (DuckDB, PostgreSQL) -> the doc's spelling.
_TYPES = {
    "varchar": "text",
    "text": "text",
    "double": "double precision",
    "double precision": "double precision",
    "integer": "integer",
    "bigint": "bigint",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
}


@dataclass(frozen=True)
class Column:
    type: str
    not_null: bool
    meaning: str = ""


@dataclass
class Relation:
    is_view: bool
    columns: dict[str, Column] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)


def parse_doc(text: str) -> dict[str, Relation]:
    """The doc's runner relations: a section runs from its heading to the next heading."""
    relations: dict[str, Relation] = {}
    current: Relation | None = None
    for line in text.splitlines():
        if line.startswith("#"):
            match = _SECTION.match(line)
            current = None
            if match:
                name = match["name"]
                assert name not in relations, f"two sections for {name}"
                current = relations[name] = Relation(is_view=bool(match["view"]))
            continue
        if current is None:
            continue
        current.text.append(line)
        row = _COLUMN.match(line)
        if row:
            assert row["name"] not in current.columns, f"{row['name']} documented twice"
            current.columns[row["name"]] = Column(
                row["type"], bool(row["not_null"]), row["meaning"].strip()
            )
    return relations


def read_catalog(wh: Warehouse) -> dict[str, Relation]:
    """Every table and view of the warehouse's schema, with its columns as the doc spells them."""
    catalog: dict[str, Relation] = {}
    for name, table_type in wh.fetchall(
        "select table_name, table_type from information_schema.tables"
        " where table_schema = %(s)s and table_catalog = current_database()",
        {"s": wh.schema},
    ):
        catalog[str(name)] = Relation(is_view=str(table_type).upper() == "VIEW")
    for table, column, data_type, nullable in wh.fetchall(
        "select table_name, column_name, data_type, is_nullable from information_schema.columns"
        " where table_schema = %(s)s and table_catalog = current_database()"
        " order by table_name, ordinal_position",
        {"s": wh.schema},
    ):
        kind = _TYPES.get(str(data_type).lower(), f"unmapped {data_type}")
        catalog[str(table)].columns[str(column)] = Column(kind, nullable == "NO")
    return catalog


def relation_problems(doc: dict[str, Relation], catalog: dict[str, Relation]) -> list[str]:
    problems = [f"{n}: no section in the doc" for n in sorted(catalog.keys() - doc.keys())]
    problems += [f"{n}: documented but not created" for n in sorted(doc.keys() - catalog.keys())]
    for name in sorted(catalog.keys() & doc.keys()):
        if doc[name].is_view != catalog[name].is_view:
            problems.append(f"{name}: a view iff its heading says (view)")
        body = "\n".join(doc[name].text)
        for label in ("**Grain**:", "**Written by**:"):
            if label not in body:
                problems.append(f"{name}: no {label} line")
    return problems


def column_problems(doc: dict[str, Relation], catalog: dict[str, Relation]) -> list[str]:
    problems: list[str] = []
    for name in sorted(catalog.keys() & doc.keys()):
        documented, actual = doc[name].columns, catalog[name].columns
        problems += [f"{name}.{c}: not documented" for c in actual if c not in documented]
        problems += [
            f"{name}.{c}: documented, not in the table"
            for c in sorted(documented.keys() - actual.keys())
        ]
        for column in actual.keys() & documented.keys():
            want, got = actual[column], documented[column]
            if got.type != want.type or got.not_null != want.not_null:
                problems.append(
                    f"{name}.{column}: documented `{got.type}`{' not null' * got.not_null}, "
                    f"is `{want.type}`{' not null' * want.not_null}"
                )
            if not re.search(r"[A-Za-z]{3,}", got.meaning) or got.meaning.upper() in _PLACEHOLDERS:
                problems.append(f"{name}.{column}: its meaning is not said in words")
    return problems


def table_rows(doc_text: str, heading: str) -> dict[str, list[str]]:
    """Rows of the first table under `heading` (a level-3 heading), keyed by their first cell."""
    start = doc_text.index(f"\n### {heading}\n")
    end = doc_text.find("\n#", start + 1)
    rows: dict[str, list[str]] = {}
    for line in doc_text[start : end if end > 0 else None].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and cells:
            rows[cells[0].strip("`")] = cells
    return rows


def _yaml_names(path: Path, kind: str) -> list[str]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader when built with it
    return [
        str(item["name"]) for item in yaml.load(path.read_text(), Loader=loader).get(kind) or ()
    ]


@pytest.fixture
def doc() -> dict[str, Relation]:
    return parse_doc(DOC.read_text())


@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def catalog(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Relation]]:
    """The relations of a freshly migrated warehouse of each kind (migrated once per module)."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    workdir = tmp_path_factory.mktemp(f"data_model_{request.param}")
    with fresh_settings(request.param, workdir, PROJECT_DIR, url) as settings:
        with connect(settings) as wh:
            migrate(wh)
            yield read_catalog(wh)


def test_every_runner_table_and_view_has_a_section(
    catalog: dict[str, Relation], doc: dict[str, Relation]
) -> None:
    """A fresh migration's relations are exactly the doc's sections, each with grain and writer."""
    assert "raw_trades" in catalog and "active_allocation" in catalog  # the catalog query works
    assert relation_problems(doc, catalog) == []


def test_every_column_is_documented_with_its_type(
    catalog: dict[str, Relation], doc: dict[str, Relation]
) -> None:
    """Each column of each runner relation has a row with its type, NOT NULL and meaning."""
    assert column_problems(doc, catalog) == []


def test_an_undocumented_or_mistyped_column_is_reported(doc: dict[str, Relation]) -> None:
    """The checks fail on the changes they exist for: a new column, a dropped one, a new type."""
    catalog = {name: Relation(r.is_view, dict(r.columns)) for name, r in doc.items()}
    catalog["raw_trades"].columns["venue"] = Column("text", False)
    del catalog["raw_bars"].columns["volume"]
    catalog["ab_tests"].columns["alpha"] = Column("text", True)
    catalog["new_table"] = Relation(is_view=False)
    assert column_problems(doc, catalog) == [
        "ab_tests.alpha: documented `double precision` not null, is `text` not null",
        "raw_bars.volume: documented, not in the table",
        "raw_trades.venue: not documented",
    ]
    assert relation_problems(doc, catalog) == ["new_table: no section in the doc"]


def test_every_dbt_mart_and_seed_is_listed_with_its_yaml() -> None:
    """Marts point to the YAML that documents their columns; seeds are all listed."""
    text = DOC.read_text()
    marts = table_rows(text, "Marts")
    declared = {
        name: str(path.relative_to(PROJECT_DIR))
        for path in sorted((PROJECT_DIR / "models" / "marts").rglob("_*.yml"))
        for name in _yaml_names(path, "models")
    }
    assert declared, "no mart found in models/marts"
    assert sorted(marts) == sorted(declared)
    for name, cells in marts.items():
        assert cells[-1] == f"`{declared[name]}`", f"{name}: columns are in {declared[name]}"
    seeds = _yaml_names(PROJECT_DIR / "seeds" / "_seeds.yml", "seeds")
    assert sorted(table_rows(text, "Seeds")) == sorted(seeds)
