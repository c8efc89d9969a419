"""Database engines for the store: SQLite tuned for several processes, or PostgreSQL.

A SQLite file is shared by the monitor, the retrainer and the CLI at once, so every
connection turns on WAL (readers never block the writer), foreign keys and a busy timeout,
and write transactions start with ``BEGIN IMMEDIATE``: a writer takes the lock up front and
waits for it, instead of failing half-way when it upgrades a read lock.
"""

from __future__ import annotations

import logging
import os
import weakref
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError

from driftline.lifecycle_store.exceptions import StoreError

__all__ = ["BUSY_TIMEOUT_MS", "WRITE", "make_engine", "migrate", "safe_url"]

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
# Execution option that marks a write transaction (BEGIN IMMEDIATE on SQLite).
WRITE = "driftline_write"
_MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x6472696674  # "drift": one migrator at a time on a shared server


def safe_url(url: str | sa.URL) -> str:
    """``url`` with its password masked, fit for logs and messages.

    >>> safe_url("postgresql+psycopg://me:secret@db:5432/x")
    'postgresql+psycopg://me:***@db:5432/x'
    """
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def make_engine(url: str | sa.URL, **engine_options: Any) -> Engine:
    """An engine for ``url`` (``sqlite:///file.db`` or ``postgresql+psycopg://…``)."""
    try:
        parsed = sa.make_url(url)
    except ArgumentError:
        raise StoreError(
            f"database URL {safe_url(url)!r} is not valid; use 'sqlite:///driftline.db' or "
            "'postgresql+psycopg://user:password@host:5432/dbname'"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, **engine_options)
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine_options.setdefault("pool_pre_ping", True)
        engine = sa.create_engine(parsed, **engine_options)
        _dispose_after_fork(engine)
        return engine
    raise StoreError(
        f"database {parsed.get_backend_name()!r} in {safe_url(parsed)!r} is not supported; "
        "use a sqlite:/// or postgresql+psycopg:// URL"
    )


def _dispose_after_fork(engine: Engine) -> None:
    # A forked child must not reuse the parent's pooled connections, nor close them.
    ref = weakref.ref(engine)

    def forget_parent_connections() -> None:
        alive = ref()
        if alive is not None:
            alive.dispose(close=False)

    os.register_at_fork(after_in_child=forget_parent_connections)


def _sqlite_engine(url: sa.URL, **engine_options: Any) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if database in ("", ":memory:"):
        engine_options.setdefault("poolclass", sa.StaticPool)
    connect_args = engine_options.pop("connect_args", {})
    connect_args.setdefault("check_same_thread", False)
    connect_args.setdefault("timeout", BUSY_TIMEOUT_MS / 1000)
    engine = sa.create_engine(url, connect_args=connect_args, **engine_options)
    _dispose_after_fork(engine)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so we can say BEGIN IMMEDIATE ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (a no-op when it is already there)."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.execution_options(**{WRITE: True}).begin() as conn:
        if conn.dialect.name == "postgresql":
            # Processes opening a fresh database together must not both create the tables.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    logger.debug("lifecycle store schema is current on %s", safe_url(engine.url))
