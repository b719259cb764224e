"""The one place that knows DuckDB from PostgreSQL: connections, parameter style, bulk loads, locks.

Queries elsewhere are written once, with `%(name)s` placeholders, in SQL both warehouses accept.
It does not know any table's meaning; migrations.py owns the engine's tables.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from runner.config import Settings
from runner.errors import WarehouseUnavailable
from runner.redact import redact

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

Params = Mapping[str, Any] | None
_NAMED = re.compile(r"%\((\w+)\)s")


class Warehouse:
    """A connection to the configured warehouse, in autocommit mode unless inside `transaction()`."""

    dialect: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.schema = settings.schema

    # -- to implement per warehouse -------------------------------------------------------
    def execute(self, sql: str, params: Params = None) -> None:
        raise NotImplementedError

    def fetchall(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def fetch_arrow(self, sql: str, params: Params = None) -> pa.Table:
        raise NotImplementedError

    def load_arrow(self, table: str, data: pa.Table) -> None:
        """Bulk-append `data` (columns named as the table's) into `table`, set-based."""
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[None]:
        raise NotImplementedError
        yield  # pragma: no cover

    def close(self) -> None:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------
    def fetchone(self, sql: str, params: Params = None) -> tuple[Any, ...] | None:
        rows = self.fetchall(sql, params)
        return rows[0] if rows else None

    def fetch_df(self, sql: str, params: Params = None) -> pd.DataFrame:
        frame: pd.DataFrame = self.fetch_arrow(sql, params).to_pandas()
        return frame

    def table_exists(self, name: str) -> bool:
        row = self.fetchone(
            "select count(*) from information_schema.tables"
            " where table_schema = %(schema)s and table_name = %(name)s",
            {"schema": self.schema, "name": name},
        )
        return bool(row and row[0])

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DuckDBWarehouse(Warehouse):
    dialect = "duckdb"

    def __init__(self, settings: Settings) -> None:
        import duckdb

        super().__init__(settings)
        path = settings.duckdb_file
        path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + settings.lock_timeout_seconds
        while True:
            try:
                self._con = duckdb.connect(str(path))
                break
            except duckdb.IOException as exc:
                # Another process holds the file (DuckDB allows one writer process); wait for it.
                if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                    raise WarehouseUnavailable(
                        f"Another process is using {path.name} ({_pid_of(str(exc))}); wait for it to "
                        "finish, or stop it, then run the command again."
                    ) from None
                time.sleep(0.2)
        self._con.execute(f'create schema if not exists "{self.schema}"')
        self._con.execute(f"set schema = '{self.schema}'")
        self._con.execute("set TimeZone = 'UTC'")
        self._con.execute("set enable_progress_bar = false")

    @staticmethod
    def _sql(sql: str) -> str:
        return _NAMED.sub(r"$\1", sql)

    def execute(self, sql: str, params: Params = None) -> None:
        self._con.execute(self._sql(sql), dict(params) if params else None)

    def fetchall(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        return self._con.execute(self._sql(sql), dict(params) if params else None).fetchall()

    def fetch_arrow(self, sql: str, params: Params = None) -> pa.Table:
        rel = self._con.execute(self._sql(sql), dict(params) if params else None)
        return rel.fetch_arrow_table()

    def load_arrow(self, table: str, data: pa.Table) -> None:
        cols = ", ".join(f'"{c}"' for c in data.column_names)
        self._con.register("_tradebase_load", data)
        try:
            self._con.execute(f'insert into "{table}" ({cols}) select {cols} from _tradebase_load')
        finally:
            self._con.unregister("_tradebase_load")

    @property
    def connection(self) -> Any:
        """The raw DuckDB connection, for set-based work that reads files (ingest)."""
        return self._con

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._con.execute("begin transaction")
        try:
            yield
        except BaseException:
            self._con.execute("rollback")
            raise
        self._con.execute("commit")

    def close(self) -> None:
        self._con.close()


class PostgresWarehouse(Warehouse):
    dialect = "postgres"

    def __init__(self, settings: Settings) -> None:
        import psycopg

        super().__init__(settings)
        pg = settings.postgres
        try:
            self._con = psycopg.connect(
                host=pg.host,
                port=pg.port,
                user=pg.user,
                password=pg.password or None,
                dbname=pg.dbname,
                autocommit=True,
                connect_timeout=10,
                options="-c TimeZone=UTC",
            )
        except psycopg.OperationalError as exc:
            detail = redact(str(exc).strip().splitlines()[0], settings.secrets())
            raise WarehouseUnavailable(
                f"Cannot connect to PostgreSQL at {pg.host}:{pg.port}/{pg.dbname} ({detail}); "
                "check DATABASE_URL and that the server is running."
            ) from None
        try:
            self._con.execute(f'create schema if not exists "{self.schema}"')
        except psycopg.errors.UniqueViolation:
            pass  # another runner created it at the same instant
        self._con.execute(f'set search_path to "{self.schema}"')

    @contextmanager
    def _connection_kept(self) -> Iterator[None]:
        """A connection lost mid-command (the server restarted, an administrator terminated it,
        the network dropped) is one handled sentence, not a driver traceback: the server has
        rolled back the open transaction, so running the command again is safe."""
        import psycopg

        try:
            yield
        except psycopg.OperationalError as exc:
            if not self._con.broken:
                raise  # a lock timeout, a cancelled query: the connection still works
            pg = self.settings.postgres
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise WarehouseUnavailable(
                f"Lost the connection to PostgreSQL at {pg.host}:{pg.port}/{pg.dbname} "
                f"({redact(text, self.settings.secrets())}); the open transaction was rolled "
                "back; run the command again."
            ) from None

    def execute(self, sql: str, params: Params = None) -> None:
        with self._connection_kept():
            self._con.execute(sql.encode(), params)

    def fetchall(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        with self._connection_kept():
            return self._con.execute(sql.encode(), params).fetchall()

    def fetch_arrow(self, sql: str, params: Params = None) -> pa.Table:
        import pyarrow as pa

        with self._connection_kept():
            cur = self._con.execute(sql.encode(), params)
            names = [d.name for d in cur.description or ()]
            rows = cur.fetchall()
        return pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})

    def load_arrow(self, table: str, data: pa.Table) -> None:
        import io

        import pyarrow.csv as pacsv

        buf = io.BytesIO()
        pacsv.write_csv(
            data, buf, pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
        )
        cols = ", ".join(f'"{c}"' for c in data.column_names)
        with (
            self._connection_kept(),
            self._con.cursor().copy(
                f"copy \"{table}\" ({cols}) from stdin (format csv, null '')".encode()
            ) as copy,
        ):
            copy.write(buf.getvalue())

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._connection_kept(), self._con.transaction():
            yield

    def close(self) -> None:
        self._con.close()


def connect(settings: Settings) -> Warehouse:
    """Open the configured warehouse (PostgreSQL when DATABASE_URL is set, else the DuckDB file)."""
    if settings.dialect == "postgres":
        return PostgresWarehouse(settings)
    return DuckDBWarehouse(settings)


def _pid_of(message: str) -> str:
    match = re.search(r"PID (\d+)", message)
    return f"PID {match.group(1)}" if match else "another runner or a SQL client"


def sql_list(values: Sequence[str]) -> str:
    """Render trusted identifiers (never user data) as a quoted SQL identifier list."""
    return ", ".join(f'"{v}"' for v in values)


@contextmanager
def session_lock(wh: Warehouse, key: str) -> Iterator[bool]:
    """Hold a named lock for this connection's session (PostgreSQL advisory lock; yields False
    when another session holds it, without waiting). DuckDB lets one process write the file, so
    there it always yields True."""
    if wh.dialect != "postgres":
        yield True
        return
    params = {"k": key}
    row = wh.fetchone("select pg_try_advisory_lock(hashtext(%(k)s))", params)
    held = bool(row and row[0])
    try:
        yield held
    finally:
        if held:
            wh.execute("select pg_advisory_unlock(hashtext(%(k)s))", params)
