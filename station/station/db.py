"""The station's database: tables, versioned migrations, engines for SQLite (WAL) and PostgreSQL.

Times are stored as UTC epoch seconds (floats) so both databases compare them
the same way. ``schema_version`` holds one row; ``migrate`` applies the steps
above it in order, each in its own transaction, and refuses a database whose
version is newer than ``SCHEMA_VERSION`` (an older station must not write into
a schema it does not know). The action log and the deletion record are
append-only: triggers refuse UPDATE and DELETE on them in both databases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.exc import SQLAlchemyError

from station.errors import SchemaError

metadata = MetaData()

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

users = Table(
    "users", metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(256), nullable=False),
    Column("role", String(16), nullable=False),  # operator | supervisor
    Column("created_at", Float, nullable=False),
)

devices = Table(
    "devices", metadata,
    Column("device_id", String(128), primary_key=True),
    Column("availability", String(16), nullable=False, default="unknown"),
    Column("status_json", Text),
    Column("status_at", Float),
    Column("last_seen", Float, nullable=False),
    Column("refused", Integer, nullable=False, default=0),
    Column("duplicates", Integer, nullable=False, default=0),
)

incidents = Table(
    "incidents", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subject_ref", String(256), nullable=False),
    Column("category", String(64), nullable=False),
    Column("first_at", Float, nullable=False),
    Column("last_at", Float, nullable=False),
    Column("state", String(16), nullable=False),  # pending | awaiting_second | decided
    Column("outcome", String(32)),
    Column("updated", Float, nullable=False),
    Index("ix_incidents_open", "subject_ref", "state", "last_at"),
    Index("ix_incidents_state_first", "state", "first_at"),
)

alerts = Table(
    "alerts", metadata,
    Column("event_id", String(36), primary_key=True),
    Column("device_id", String(128), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("camera_id", String(128), nullable=False),
    Column("site", String(256), nullable=False),
    Column("captured_at", Float, nullable=False),
    Column("subject_ref", String(256), nullable=False),
    Column("category", String(64), nullable=False),
    Column("score", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("incident_id", Integer, ForeignKey("incidents.id"), nullable=False),
    Column("body_json", Text, nullable=False),  # the alert without its crop
    Column("received_at", Float, nullable=False),
    Index("ix_alerts_incident", "incident_id"),
    Index("ix_alerts_device_seq", "device_id", "seq"),
)

crops = Table(
    "crops", metadata,
    Column("event_id", String(36), ForeignKey("alerts.event_id"), primary_key=True),
    Column("jpeg", LargeBinary, nullable=False),
    Column("captured_at", Float, nullable=False),
)

refusals = Table(  # what was refused and why; never the refused payload
    "refusals", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("topic_device", String(128), nullable=False),
    Column("reason", String(512), nullable=False),
)

device_docs = Table(  # stats, transparency and audit checkpoints, as received
    "device_docs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("device_id", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("at", Float, nullable=False),
    Column("body_json", Text, nullable=False),
    Index("ix_docs_device_kind", "device_id", "kind", "at"),
)

decisions = Table(
    "decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, ForeignKey("incidents.id"), nullable=False),
    Column("username", String(64), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("note", String(200), nullable=False),
    Column("decided_at", Float, nullable=False),
    Index("ix_decisions_incident", "incident_id"),
)

reviews = Table(  # one signed review per alert of a decision: the outbox to the devices
    "reviews", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("decision_id", Integer, ForeignKey("decisions.id"), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Column("published_at", Float),
    Column("applied_at", Float),
    Index("ix_reviews_pending", "published_at"),
    Index("ix_reviews_event", "event_id"),
)

deletions = Table(
    "deletions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("reason", String(256), nullable=False),
)

action_log = Table(
    "action_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("username", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("detail", Text, nullable=False),
    Column("ok", Boolean, nullable=False),
)

APPEND_ONLY: Final = ("action_log", "deletions")


def _append_only(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        for t in APPEND_ONLY:
            for op in ("UPDATE", "DELETE"):
                conn.execute(text(
                    f"CREATE TRIGGER {t}_no_{op.lower()} BEFORE {op} ON {t} "
                    f"BEGIN SELECT RAISE(ABORT, '{t} is append-only'); END"))
    else:
        conn.execute(text(
            "CREATE FUNCTION station_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"))
        for t in APPEND_ONLY:
            conn.execute(text(f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
                              f"FOR EACH ROW EXECUTE FUNCTION station_append_only()"))


def _v1(conn: Connection) -> None:
    metadata.create_all(conn)
    _append_only(conn)


# Version N is reached by MIGRATIONS[N - 1]; append steps, never edit one that shipped.
MIGRATIONS: Final[tuple[Callable[[Connection], None], ...]] = (_v1,)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def connect(url: str) -> Engine:
    """An engine for ``url``: ``sqlite:///file.db`` (WAL) or ``postgresql+psycopg://...``."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ValueError) as exc:
        raise SchemaError(f"database URL {url!r} is not usable: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def current_version(conn: Connection) -> int:
    if not conn.dialect.has_table(conn, "schema_version"):
        return 0
    v = conn.execute(select(schema_version.c.version)).scalar()
    return int(v or 0)


def migrate(engine: Engine) -> int:
    """Bring the schema up to ``SCHEMA_VERSION``; refuse a newer one. Returns the version."""
    try:
        with engine.begin() as conn:
            have = current_version(conn)
        if have > SCHEMA_VERSION:
            raise SchemaError(f"database schema v{have} is newer than this station knows "
                              f"(v{SCHEMA_VERSION}); upgrade the station")
        for version in range(have + 1, SCHEMA_VERSION + 1):
            with engine.begin() as conn:
                MIGRATIONS[version - 1](conn)
                if version == 1:
                    conn.execute(schema_version.insert().values(version=1))
                else:
                    conn.execute(schema_version.update().values(version=version))
        return SCHEMA_VERSION
    except SQLAlchemyError as exc:
        raise SchemaError(f"schema migration failed: {exc}") from exc
