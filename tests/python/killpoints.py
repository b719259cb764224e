"""Test-only crash injection: run the `runner` CLI with every warehouse statement counted per
cycle step, and SIGKILL the whole runner at the k-th statement of a chosen step.

    python -m tests.python.killpoints [--kill STEP:K] [--trace FILE] -- cycle --steps deploy
    python -m tests.python.killpoints --serve    # the same, one run per JSON line on stdin

It owns the counting and the kill; it changes nothing in the engine (it wraps the warehouse's
methods and dbt's `add_query` from outside, and the cycle's step functions to know the step).
A statement is one execute/fetch/bulk load, a transaction's commit (counted just before it, so
a kill there rolls the transaction back), or one query dbt sends. The optimize task's forked
child shares the counters; a kill there kills the runner first (the child dies with it).
`--serve` imports the CLI once and forks one child per request (`Runs` is its client); after each
child that finished it loads what that child loaded (modules, compiled kernels), so a run costs
its work and not the interpreter's start or the cycle's lazy imports.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The cycle's phases in order: "start" is the cycle's own bookkeeping before ANALYZE (migration,
# recovery of interrupted cycles, cycle_started); "summary" is the report, the final event and
# the notifications.
STEPS = ("start", "analyze", "identify", "optimize", "deploy", "summary")
_WRAPPED_STEPS = {
    "_analyze": "analyze",
    "_identify": "identify",
    "_optimize": "optimize",
    "_deploy": "deploy",
    "_charts": "summary",
    "_finish": "summary",
}


class StatementCounter:
    """Statements per step, in memory shared with forked children; the trace file and the kill."""

    def __init__(
        self,
        kill: tuple[str, int] | None,
        trace: str | None,
        pause: tuple[str, str] | None = None,
    ) -> None:
        self.counts = multiprocessing.RawArray("q", len(STEPS))
        self.lock = threading.Lock()  # dbt threads; a forked task never counts at the same time
        self.kill = kill
        self.trace = trace
        self.step = "start"
        self.main_pid = os.getpid()
        # (step, SQL prefix): hold the first such statement until `<trace>.go` exists, so a
        # test can cut the connection under it.
        self.pause = pause

    def tick(self, kind: str, sql: str) -> None:
        index = STEPS.index(self.step)
        with self.lock:
            self.counts[index] += 1
            k = self.counts[index]
        head = " ".join(sql.split())[:120]
        if self.pause is not None and self.pause[0] == self.step and head.startswith(self.pause[1]):
            self.pause = None
            self._write({"paused": True, "step": self.step, "k": k, "kind": kind, "sql": head})
            go = f"{self.trace}.go"
            for _ in range(6000):
                if os.path.exists(go):
                    break
                time.sleep(0.01)
        if self.kill is not None and self.kill == (self.step, k):
            self._write({"killed": True, "step": self.step, "k": k, "kind": kind, "sql": head})
            if os.getpid() != self.main_pid:
                os.kill(self.main_pid, signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
        if self.trace is not None and self.kill is None:
            self._write({"step": self.step, "k": k, "kind": kind, "sql": head})

    def _write(self, record: dict[str, Any]) -> None:
        if self.trace is None:
            return
        fd = os.open(self.trace, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (json.dumps(record) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)


def _text(sql: object) -> str:
    return sql.decode() if isinstance(sql, bytes) else str(sql)


def install(counter: StatementCounter) -> None:
    """Wrap the warehouse classes, dbt's query path and the cycle's steps."""
    import runner.cycle as cycle
    from runner.warehouse import DuckDBWarehouse, PostgresWarehouse

    def counted(method: Callable[..., Any], kind: str) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: Any, first: Any, *args: Any, **kwargs: Any) -> Any:
            counter.tick(kind, _text(first))
            return method(self, first, *args, **kwargs)

        return wrapper

    for cls in (DuckDBWarehouse, PostgresWarehouse):
        for name in ("execute", "fetchall", "fetch_arrow", "load_arrow"):
            setattr(cls, name, counted(getattr(cls, name), name))
        cls.transaction = _counted_transaction(cls.transaction, counter)  # type: ignore[method-assign, assignment]

    from dbt.adapters.sql.connections import SQLConnectionManager

    SQLConnectionManager.add_query = counted(SQLConnectionManager.add_query, "dbt")  # type: ignore[method-assign]

    for name, step in _WRAPPED_STEPS.items():
        setattr(cycle, name, _in_step(getattr(cycle, name), step, counter))
    record_start = cycle._record_start  # a step's first statements: its cycle_step_started

    def starting(settings: Any, cycle_id: str, step: str) -> None:
        counter.step = step
        record_start(settings, cycle_id, step)

    cycle._record_start = starting


def _counted_transaction(
    original: Callable[[Any], Any], counter: StatementCounter
) -> Callable[[Any], Any]:
    @contextmanager
    def transaction(self: Any) -> Iterator[None]:
        with original(self):
            yield
            counter.tick("commit", "commit")

    return transaction


def _in_step(
    function: Callable[..., Any], step: str, counter: StatementCounter
) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        counter.step = step
        return function(*args, **kwargs)

    return wrapper


def _parse_kill(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    step, _, k = text.partition(":")
    if step not in STEPS or not k.isdigit() or int(k) < 1:
        raise SystemExit(f"--kill {text!r}: STEP:K with STEP one of {STEPS}")
    return step, int(k)


def _run_cli(
    args: list[str],
    kill: tuple[str, int] | None,
    trace: str | None,
    pause: tuple[str, str] | None = None,
) -> None:
    install(StatementCounter(kill, trace, pause))
    from runner.cli import main as runner_main

    sys.argv = ["runner", *args]
    runner_main()


def serve() -> None:
    """One JSON request per stdin line: {"args", "env", "kill", "trace", "stdout", "stderr"};
    each runs in a forked child; the answer line is {"returncode"} (-9: killed)."""
    import dbt.adapters.sql.connections  # noqa: F401 - warm for the runs that build

    import runner.cli  # noqa: F401

    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 2
            try:
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                for fd, name in ((1, "stdout"), (2, "stderr")):
                    out = os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(out, fd)
                os.environ.clear()
                os.environ.update(request["env"])
                pause = request.get("pause")
                _run_cli(
                    request["args"],
                    _parse_kill(request.get("kill")),
                    request.get("trace"),
                    (pause[0], pause[1]) if pause else None,
                )
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                _record_loaded(f"{request['trace']}.loaded")
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        _load_like(f"{request['trace']}.loaded")
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


# What a finished child loaded, loaded again by the server so that the next children start warm:
# the cycle imports its heavy libraries lazily (pandas, matplotlib...) and numba loads each compiled
# kernel from its cache at its first call: ~1.4 s of CPU in every run (3.1 s -> 1.7 s measured for a
# cycle without ANALYZE).
def _record_loaded(path: str) -> None:
    import pickle

    registry = sys.modules.get("numba.core.registry")
    compiled = [
        (module, name, signature)
        for module, value in list(sys.modules.items())
        if registry is not None and module.startswith("runner.")
        for name, dispatcher in getattr(value, "__dict__", {}).items()
        if isinstance(dispatcher, registry.CPUDispatcher)
        for signature in dispatcher.signatures
    ]
    with open(path, "wb") as handle:
        pickle.dump((list(sys.modules), compiled), handle)


def _load_like(path: str) -> None:
    """Best effort: a module or kernel that does not load here is loaded by the child itself."""
    import importlib
    import pickle

    if not os.path.exists(path):  # a killed child records nothing
        return
    with open(path, "rb") as handle:
        modules, compiled = pickle.load(handle)
    for module in modules:  # in the child's import order
        if module not in sys.modules and not module.endswith("__main__"):
            try:
                importlib.import_module(module)
            except Exception:  # noqa: S112 - an alias or a module made at run time
                continue
    for module, name, signature in compiled:
        try:
            getattr(sys.modules[module], name).compile(signature)
        except Exception:  # noqa: S112
            continue


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stdout: str
    stderr: str
    killed: dict[str, Any] | None  # the statement it died at, when it was killed
    trace: list[dict[str, Any]]  # every statement of an unkilled traced run


class Runs:
    """Client of `--serve`: run the CLI in a warm child, optionally killed at STEP:K."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.count = 0
        self._server = subprocess.Popen(
            [sys.executable, "-m", "tests.python.killpoints", "--serve"],
            cwd=Path(__file__).resolve().parents[2],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def trace_of_next(self) -> Path:
        """The trace file the next run writes (a paused run waits for this path + `.go`)."""
        return self.workdir / f"run{self.count + 1:03d}.trace"

    def run(
        self,
        args: list[str],
        env: dict[str, str],
        kill: tuple[str, int] | None = None,
        pause: tuple[str, str] | None = None,
    ) -> RunResult:
        self.count += 1
        base = self.workdir / f"run{self.count:03d}"
        trace = base.with_suffix(".trace")
        request = {
            "args": args,
            "env": env,
            "pause": list(pause) if pause else None,
            "kill": f"{kill[0]}:{kill[1]}" if kill else None,
            "trace": str(trace),
            "stdout": str(base.with_suffix(".out")),
            "stderr": str(base.with_suffix(".err")),
        }
        assert self._server.stdin is not None and self._server.stdout is not None
        self._server.stdin.write(json.dumps(request) + "\n")
        self._server.stdin.flush()
        answer = json.loads(self._server.stdout.readline())
        records = [json.loads(x) for x in trace.read_text().splitlines()] if trace.exists() else []
        killed = next((r for r in records if r.get("killed")), None)
        records = [r for r in records if not r.get("paused")]
        return RunResult(
            int(answer["returncode"]),
            base.with_suffix(".out").read_text(),
            base.with_suffix(".err").read_text(),
            killed,
            [] if killed else records,
        )

    def close(self) -> None:
        if self._server.stdin is not None:
            self._server.stdin.close()
        self._server.wait(timeout=30)


def main(argv: list[str]) -> None:
    if argv == ["--serve"]:
        serve()
        return
    if "--" not in argv:
        raise SystemExit("usage: python -m tests.python.killpoints [--kill STEP:K] -- ARGS")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="killpoints")
    parser.add_argument("--kill", help="STEP:K, the k-th statement (from 1) of STEP")
    parser.add_argument("--trace", help="append one JSON line per statement (or the kill) here")
    options = parser.parse_args(argv[:split])
    _run_cli(argv[split + 1 :], _parse_kill(options.kill), options.trace)


if __name__ == "__main__":
    main(sys.argv[1:])
