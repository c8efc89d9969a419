"""Alembic environment: runs on the connection that ``driftline.lifecycle_store.engine.migrate``
opens.

To add a revision after changing ``lifecycle_store/orm.py``::

    alembic -c lifecycle_store/migrations/alembic.ini revision --autogenerate -m "what changed"
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from driftline.lifecycle_store.orm import Base

target_metadata = Base.metadata


def run() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section) or {},
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


# Importing this file outside an Alembic command (doctest collection, say) must do nothing.
if hasattr(context, "config"):
    run()
