"""What a valid row of each input kind is: its columns, key, target table and domain checks.

Pure data: the SQL fragments here are DuckDB expressions over typed columns (see validate.py) and
contain no user input. Reading files and writing to the warehouse live elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

FieldType = Literal["text", "number", "timestamp", "label", "choice"]


class Kind(StrEnum):
    trades = "trades"
    predictions = "predictions"
    bars = "bars"


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    required: bool = True
    choices: tuple[str, ...] = ()
    default: str | None = None  # SQL literal used when an optional value is empty


@dataclass(frozen=True)
class Check:
    """A domain rule: `bad` is true for a failing row; `message` is a SQL string expression."""

    code: str
    bad: str
    message: str


@dataclass(frozen=True)
class Spec:
    kind: Kind
    table: str
    fields: tuple[Field, ...]
    key: tuple[str, ...]
    checks: tuple[Check, ...]
    # A column a later file may fill in when it is still empty (never overwrite, never erase).
    fill_in: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)

    @property
    def timestamps(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.type == "timestamp")


def _shown(column: str) -> str:
    """The raw text of `column`, quoted and cut short, for messages."""
    return f"'''' || left(raw_{column}, 60) || ''''"


def bounded(column: str, op: str, bound: str, wording: str) -> Check:
    return Check(
        "out_of_range",
        f"not ({column} {op} {bound})",
        f"'{column} ' || {_shown(column)} || ' must be {wording}'",
    )


def not_in_future(column: str) -> Check:
    return Check(
        "future_timestamp",
        f"{column} > $now",
        f"'{column} ' || {_shown(column)} || ' is in the future'",
    )


def _text(name: str, required: bool = True) -> Field:
    return Field(name, "text", required)


TRADES = Spec(
    kind=Kind.trades,
    table="raw_trades",
    fields=(
        _text("trade_id"),
        _text("component_id"),
        _text("symbol"),
        Field("side", "choice", choices=("long", "short")),
        Field("quantity", "number"),
        Field("entry_ts", "timestamp"),
        Field("exit_ts", "timestamp"),
        Field("entry_price", "number"),
        Field("exit_price", "number"),
        Field("fees", "number", required=False, default="0"),
        _text("strategy_version", required=False),
        _text("variant", required=False),
        _text("model_version", required=False),
    ),
    key=("trade_id",),
    checks=(
        bounded("quantity", ">", "0", "> 0"),
        bounded("entry_price", ">", "0", "> 0"),
        bounded("exit_price", ">", "0", "> 0"),
        bounded("fees", ">=", "0", ">= 0"),
        not_in_future("entry_ts"),
        not_in_future("exit_ts"),
        Check(
            "exit_before_entry",
            "exit_ts < entry_ts",
            f"'exit_ts ' || {_shown('exit_ts')} || ' is before entry_ts ' || {_shown('entry_ts')}",
        ),
        Check(
            "unknown_component",
            "component_id not in (select component_id from components)",
            f"'component_id ' || {_shown('component_id')} || ' is not declared in seeds/components.csv'",
        ),
    ),
)

PREDICTIONS = Spec(
    kind=Kind.predictions,
    table="raw_predictions",
    fields=(
        _text("prediction_id"),
        _text("model_id"),
        _text("model_version"),
        _text("symbol"),
        Field("ts", "timestamp"),
        Field("predicted_label", "label"),
        Field("predicted_proba", "number", required=False),
        Field("actual_label", "label", required=False),
    ),
    key=("prediction_id",),
    checks=(
        Check(
            "out_of_range",
            "not (predicted_proba between 0 and 1)",
            f"'predicted_proba ' || {_shown('predicted_proba')} || ' must be between 0 and 1'",
        ),
        not_in_future("ts"),
    ),
    fill_in="actual_label",
)

BARS = Spec(
    kind=Kind.bars,
    table="raw_bars",
    fields=(
        _text("symbol"),
        Field("ts", "timestamp"),
        Field("open", "number"),
        Field("high", "number"),
        Field("low", "number"),
        Field("close", "number"),
        Field("volume", "number"),
    ),
    key=("symbol", "ts"),
    checks=(
        *(bounded(price, ">", "0", "> 0") for price in ("open", "high", "low", "close")),
        bounded("volume", ">=", "0", ">= 0"),
        not_in_future("ts"),
        Check(
            "inconsistent_bar",
            "high < greatest(open, close) or low > least(open, close)",
            "'high ' || raw_high || ' / low ' || raw_low || ' do not bracket open ' || raw_open"
            " || ' and close ' || raw_close",
        ),
    ),
)

SPECS: dict[Kind, Spec] = {spec.kind: spec for spec in (TRADES, PREDICTIONS, BARS)}
