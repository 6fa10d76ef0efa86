"""The database: SQLAlchemy's engines, their connection check, single-statement calls that
commit on their own, and the SQLite file of the development default."""

import logging
import os
import select

from flask import Flask, current_app, has_request_context
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError

from .extensions import db, migrate

log = logging.getLogger(__name__)

# app.extensions: on PostgreSQL, the engine whose connections commit each statement (see call).
AUTOCOMMIT_ENGINE = "autocommit_engine"


def register_database(app: Flask) -> None:
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        os.makedirs(app.instance_path, exist_ok=True)
        path = os.path.join(app.instance_path, "store.db")
        app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{path}"
        log.warning("DATABASE_URL is unset: using SQLite at %s (development only)", path)
    on_postgres = app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")
    if on_postgres:
        # Fail fast when the server is gone or the pool is exhausted rather than hold a worker;
        # libpq's shortest connect timeout is 2 s. No prepared statements: behind PgBouncer's
        # transaction pooling the next transaction may run on another server connection, where
        # psycopg's "_pg3_0" does not exist.
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {
            **app.config["SQLALCHEMY_ENGINE_OPTIONS"],
            "pool_timeout": 1,
            "connect_args": {"connect_timeout": 2, "prepare_threshold": None},
        }
    db.init_app(app)
    if on_postgres:
        with app.app_context():
            engine = db.engine
        options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
        calls = app.extensions[AUTOCOMMIT_ENGINE] = create_engine(
            engine.url, isolation_level="AUTOCOMMIT", **options
        )
        for each in (engine, calls):
            event.listen(each, "checkout", replace_if_ended_by_server)
    # db.session serves every app of the process: one listener, which looks at the database.
    if not event.contains(db.session, "after_begin", bound_the_waits):
        event.listen(db.session, "after_begin", bound_the_waits)
    app.teardown_appcontext(end_database_session)
    # Batch mode lets later migrations alter tables on SQLite too.
    migrate.init_app(
        app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"), render_as_batch=True
    )


def end_database_session(exc: BaseException | None) -> None:
    """End the request's database session, keeping the answer already made.

    Runs before Flask-SQLAlchemy's own teardown. Ending the session rolls back on the
    request's connection; if the server cut that connection after the response was made,
    the rollback fails, and the answer already given must stand rather than become a 500.
    """
    try:
        db.session.remove()
    except DBAPIError as error:
        log.warning("discarding a database connection lost at the end of a request: %r", error.orig)
        db.session.registry.clear()


# Local to the transaction: set per connection (or in libpq's startup options) it would not
# hold through PgBouncer's transaction pooling.
BOUND_THE_WAITS = (
    "SELECT set_config('statement_timeout', %(statement)s, true), set_config('lock_timeout', %(lock)s, true)"
)


def bound_the_waits(session, transaction, connection) -> None:
    """Within a request, no statement runs or waits for a lock past its timeout: a stalled
    database (a lock held, a slow query) is a 503 within a second, not a hung worker.

    Commands (migrations, repairs) run without it. The sale sets its own (store_purchase()).
    """
    if has_request_context() and connection.dialect.name == "postgresql":
        config = current_app.config
        timeouts = {"statement": f"{config['DATABASE_STATEMENT_TIMEOUT_MS']}ms"}
        timeouts["lock"] = f"{config['DATABASE_LOCK_TIMEOUT_MS']}ms"
        connection.exec_driver_sql(BOUND_THE_WAITS, timeouts)


def replace_if_ended_by_server(dbapi_connection, connection_record, connection_proxy) -> None:
    """A pre-ping without a round trip, for connections that sit idle between requests.

    SQLAlchemy's `pool_pre_ping` sends a query at every checkout, which on a busy machine
    cost as much as a sale. Nothing arrives on an idle connection unless the server ends it
    (a restart, a kill, an idle timeout), when it sends its farewell and closes: anything
    to read means the connection must not be used, and the pool opens a fresh one (its
    documented handling of DisconnectionError raised at checkout). A connection that fails
    after this check fails the statement, as it would after a ping, and is a 503.
    """
    if dbapi_connection.closed:
        raise DisconnectionError("connection already closed")
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    if poller.poll(0):
        raise DisconnectionError("the server ended this idle connection")


def call(statement: str, params: dict) -> tuple:
    """The first row of one statement run as its own transaction: one round trip, no BEGIN or COMMIT.

    On an engine of its own whose connections stay in autocommit (setting it per call on the
    app's pool cost 10% of purchases per second), and on the DBAPI cursor (SQLAlchemy's
    Connection around it cost 4% more; both measured side by side). Every DBAPI error, the
    connect's included, is raised as SQLAlchemy's Connection raises it, through its own
    DBAPIError.instance, with a lost connection invalidated: app.errors sees the same faults
    from here as from every other query.
    """
    engine: Engine = current_app.extensions[AUTOCOMMIT_ENGINE]
    dbapi_error = engine.dialect.loaded_dbapi.Error
    try:
        connection = engine.raw_connection()
    except dbapi_error as exc:
        lost = engine.dialect.is_disconnect(exc, None, None)
        raise DBAPIError.instance(statement, params, exc, dbapi_error, connection_invalidated=lost) from exc
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchone()
    except dbapi_error as exc:
        lost = engine.dialect.is_disconnect(exc, connection.dbapi_connection, None)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(statement, params, exc, dbapi_error, connection_invalidated=lost) from exc
    finally:
        connection.close()


def dispose_engines(app: Flask) -> None:
    """Close every pooled connection of the app (tests that drop their database, forks)."""
    with app.app_context():
        db.engine.dispose()
    if AUTOCOMMIT_ENGINE in app.extensions:
        app.extensions[AUTOCOMMIT_ENGINE].dispose()
