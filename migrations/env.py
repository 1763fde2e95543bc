"""Alembic environment: runs on a connection handed over by gateway.migrate,
or (for the plain `alembic` command) on an engine built from the gateway settings."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from gateway.models import metadata

config = context.config
target_metadata = metadata


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine() -> None:
    from gateway.config import load_settings
    from gateway.db import create_engine

    url = config.get_main_option("sqlalchemy.url") or load_settings().resolved_database_url
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(_configure_and_run)
    await engine.dispose()


if context.is_offline_mode():
    run_offline()
elif (conn := config.attributes.get("connection")) is not None:
    _configure_and_run(conn)
else:
    asyncio.run(_run_with_own_engine())
