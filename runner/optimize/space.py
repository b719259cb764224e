"""The search space: which of a strategy's parameters a run varies, and how Optuna samples them.

A task may restrict the search (`{"params": ["stop_loss", "take_profit"]}`); every other
parameter stays at its production value, so a run changes only what it was asked to change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from runner.errors import ConfigError
from runner.strategies import Param, Strategy

if TYPE_CHECKING:
    import optuna


def searched_params(strategy: Strategy, names: Sequence[str] | None) -> tuple[Param, ...]:
    """The parameters to vary: `names` if given (each must exist and have bounds), else every
    searchable one."""
    space = {p.name: p for p in strategy.parameters()}
    if names is None:
        chosen = [p for p in space.values() if p.searchable]
    else:
        unknown = [n for n in names if n not in space]
        if unknown:
            raise ConfigError(
                f"The task names parameters {', '.join(map(repr, unknown))} that strategy "
                f"{strategy.name!r} does not have (it has {', '.join(space)})."
            )
        chosen = [space[n] for n in names]
    for param in chosen:
        if param.kind != "bool" and (param.low is None or param.high is None):
            raise ConfigError(
                f"Parameter {param.name!r} of strategy {strategy.name!r} has no bounds to search."
            )
    if not chosen:
        raise ConfigError("The search space is empty: name at least one parameter.")
    return tuple(chosen)


def suggest(
    trial: optuna.Trial, space: Sequence[Param], fixed: Mapping[str, Any]
) -> dict[str, Any]:
    """Parameters for one trial: the searched ones sampled, the rest as in production."""
    params = dict(fixed)
    for p in space:
        if p.kind == "bool":
            params[p.name] = trial.suggest_categorical(p.name, [False, True])
        elif p.kind == "int":
            assert p.low is not None and p.high is not None
            params[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
        else:
            assert p.low is not None and p.high is not None
            params[p.name] = trial.suggest_float(p.name, float(p.low), float(p.high), log=p.log)
    return params


def describe(space: Sequence[Param]) -> list[dict[str, Any]]:
    """The space as JSON-ready rows for the run record."""
    return [
        {"name": p.name, "kind": p.kind, "low": p.low, "high": p.high, "log": p.log} for p in space
    ]
