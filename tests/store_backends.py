"""The two store backends as the store suite sees them: open one, break it, mend it.

tests/unit/test_store.py runs its suite on `SqliteBackend`; tests/integration/
test_store_postgres.py runs the same tests on `PostgresBackend` (a database of its own in the
session's PostgreSQL cluster, tests/pg.py).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Protocol

from netopt.store import PostgresStore, SqliteStore


class Backend(Protocol):
    name: str

    def open(self, **kwargs: Any) -> Any: ...  # SqliteStore | PostgresStore, same methods
    def set_schema_version(self, version: int) -> None: ...
    def make_read_only(self, store: Any) -> None: ...
    def make_writable(self, store: Any) -> None: ...


class SqliteBackend:
    name = "sqlite"

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "s.db"

    def open(self, **kwargs: Any) -> SqliteStore:
        return SqliteStore(self.path, **kwargs)

    def set_schema_version(self, version: int) -> None:
        db = sqlite3.connect(self.path)
        db.execute("UPDATE schema_version SET version = ?", (version,))
        db.commit()
        db.close()

    def make_read_only(self, store: SqliteStore) -> None:
        store._db.execute("PRAGMA query_only = ON")

    def make_writable(self, store: SqliteStore) -> None:
        store._db.execute("PRAGMA query_only = OFF")


_REFUSE = """CREATE OR REPLACE FUNCTION netopt_test_refuse() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN RAISE EXCEPTION 'database is read-only (test)' USING ERRCODE = '25006'; END$$"""


class PostgresBackend:
    name = "postgresql"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def open(self, **kwargs: Any) -> PostgresStore:
        return PostgresStore(self.dsn, **kwargs)

    def _sql(self, *statements: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as db:
            for sql in statements:
                db.execute(sql)  # type: ignore[arg-type]

    def set_schema_version(self, version: int) -> None:
        self._sql(f"UPDATE schema_version SET version = {int(version)}")

    def make_read_only(self, store: PostgresStore) -> None:
        """Every write refused as a read-only database refuses it (SQLSTATE 25006)."""
        self._sql(_REFUSE, "CREATE TRIGGER refuse BEFORE INSERT ON rounds "
                  "FOR EACH STATEMENT EXECUTE FUNCTION netopt_test_refuse()")  # fmt: skip

    def make_writable(self, store: PostgresStore) -> None:
        self._sql("DROP TRIGGER refuse ON rounds")
