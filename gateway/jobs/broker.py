"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, tuned.

Used when no ``MCPGW_REDIS_URL`` is set, so `make serve` runs real Celery workers with
no server to install. Three changes to kombu's transport, each for a reason:

- ``polling_interval`` is taken out of the options before they reach
  ``create_engine`` (kombu passes every transport option to it, and the virtual
  transport reads the interval from the same dict): polling every 50 ms instead of
  every second is what makes a job start in tens of milliseconds.
- The SQLite file is opened in WAL mode with a busy timeout, so the gateway putting a
  message and the worker polling for one do not fail with "database is locked".
- A delivered message is deleted, not kept with ``visible = false`` forever (kombu
  never restores or removes those rows, so the table would only grow). Nothing is
  lost by this: a message taken by a worker that then dies is not redelivered by
  this transport either way; the jobs reaper notices the lost job instead.

Limits: no fanout, so no Celery remote control (no ``revoke``; cancellation is
cooperative, through the jobs table), no priorities, no countdown beyond the worker's
memory, one machine (the file must be local to every process using it).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.transport import sqlalchemy as kombu_sqla
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import event, text
from sqlalchemy.exc import SADeprecationWarning

from gateway.datadir import secure_sqlite_file

# kombu's message model declares its queue relationship with ``lazy="noload"``, which
# SQLAlchemy 2.1 deprecates; harmless here (the transport never loads it). If a future
# SQLAlchemy removes it, this transport needs kombu's fix (or a model of our own).
warnings.filterwarnings(
    "ignore", message=".*``noload`` loader strategy", category=SADeprecationWarning
)


def _pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Channel(kombu_sqla.Channel):
    """kombu's SQLAlchemy channel with the changes the module docstring gives."""

    def _engine_from_config(self) -> Any:
        options = self.connection.client.transport_options
        url = str(self.connection.client.hostname)
        if url.startswith("sqlite:///"):
            # Private like the gateway's own database (0600, journals too).
            secure_sqlite_file(Path(url.removeprefix("sqlite:///")))
        polling = options.pop("polling_interval", None)
        try:
            engine = super()._engine_from_config()  # type: ignore[no-untyped-call]
        finally:
            if polling is not None:
                options["polling_interval"] = polling
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _pragmas)
        return engine

    def _get(self, queue: str, timeout: Any = None) -> Any:
        obj = self._get_or_create(queue)  # type: ignore[no-untyped-call]
        session = self.session
        if session.bind.name == "sqlite":
            session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        try:
            msg = (
                session.query(self.message_cls)
                .filter(self.message_cls.queue_id == obj.id)
                .filter(self.message_cls.visible.is_(True))
                .order_by(self.message_cls.sent_at, self.message_cls.id)
                .limit(1)
                .first()
            )
            if msg is None:
                raise Empty()
            payload = json.loads(bytes_to_str(msg.payload))  # type: ignore[no-untyped-call]
            session.delete(msg)
            return payload
        finally:
            session.commit()


class Transport(kombu_sqla.Transport):
    """Select with ``broker_transport = "gateway.jobs.broker:Transport"``."""

    Channel = Channel
