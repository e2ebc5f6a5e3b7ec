"""A zero-service Celery broker for development and single-machine use: a SQLite file.

Use it with two settings (the extra ``embedded`` installs SQLAlchemy)::

    CELERY_BROKER_URL = "sqlite:////abs/path/broker.sqlite3"
    CELERY_BROKER_TRANSPORT = "asyncqueue_django.embedded_broker:Transport"

(kombu refuses import paths inside a broker URL, so the transport is named separately; set
``CELERY_BROKER_TRANSPORT`` only together with a ``sqlite:`` URL.)

It is kombu's SQLAlchemy transport with three changes that make it dependable on one machine:

- a consumed message is deleted in the same transaction that takes it (the stock transport
  keeps every message forever, marked invisible), so the file stays small;
- SQLite runs in WAL mode with a busy timeout, so the web server, the worker and beat can
  share the file without "database is locked" errors;
- it polls every 0.1 s instead of every second (set as a class attribute: passing
  ``polling_interval`` in transport options would be handed to ``create_engine`` and crash).

Like the stock transport it has no acknowledgements: a message taken by a worker that then
dies is gone. The task table is what guarantees nothing is lost: the recovery sweep
re-dispatches any due task that nobody claimed. For production use Redis or RabbitMQ.
"""

from __future__ import annotations

from json import loads
from queue import Empty
from typing import Any

from kombu.transport import sqlalchemy as kombu_sqla
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import create_engine, event, text


class Channel(kombu_sqla.Channel):
    def _engine_from_config(self) -> Any:
        conninfo: Any = self.connection.client
        engine = create_engine(conninfo.hostname, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine

    def _get(self, queue: str, timeout: Any = None) -> Any:
        obj = self._get_or_create(queue)  # type: ignore[attr-defined]
        session = self.session
        # IMMEDIATE takes the write lock up front, so two consumers never take one message.
        session.execute(text("BEGIN IMMEDIATE TRANSACTION"))
        try:
            msg = (
                session.query(self.message_cls)
                .filter(self.message_cls.queue_id == obj.id)
                .order_by(self.message_cls.id)
                .limit(1)
                .first()
            )
            if msg is None:
                raise Empty()
            payload = loads(bytes_to_str(msg.payload))
            session.delete(msg)
            return payload
        finally:
            session.commit()

    def _purge(self, queue: str) -> int:
        count = self._query_all(queue).delete(  # type: ignore[attr-defined]
            synchronize_session=False
        )
        self.session.commit()
        return int(count)

    def _size(self, queue: str) -> int:
        return int(self._query_all(queue).count())  # type: ignore[attr-defined]


class Transport(kombu_sqla.Transport):
    Channel = Channel
    polling_interval = 0.1
