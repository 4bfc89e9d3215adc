"""The SQLite database: one sqlite-utils Database per app context.

SQLite is the source of truth. Connections run in WAL mode with foreign keys on and a
busy timeout, so that concurrent requests wait for each other instead of failing.
"""

import contextlib
import logging
import threading
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils
from flask import current_app, g

DATABASE_FILE = "kb.sqlite3"
BUSY_TIMEOUT_MS = 5000
log = logging.getLogger(__name__)
# Under `serve`, each worker thread keeps its connection between requests: opening one
# parses the whole schema (~0.8 ms) and closing one checkpoints, which together cost as
# much as a small request itself. {path: Database}, one per thread.
_idle = threading.local()


def database_path(data_dir) -> Path:
    return Path(data_dir) / DATABASE_FILE


def open_db(path) -> sqlite_utils.Database:
    """Open (creating if needed) the database at ``path`` with the project's pragmas."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite_utils.Database(path)
    db.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.conn.execute("PRAGMA foreign_keys = ON")
    # FULL, not NORMAL: an acknowledged report must survive a power cut, not only a crash.
    db.conn.execute("PRAGMA synchronous = FULL")
    if db.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        with db.ensure_autocommit_on():
            db.conn.execute("PRAGMA journal_mode = WAL")
    return db


def get_db() -> sqlite_utils.Database:
    """The database of the current app context, opened on first use.

    Its after-commit hooks are the app's (the search index registers one).
    """
    if "db" not in g:
        path = database_path(current_app.config["DATA_DIR"])
        if current_app.config.get("REUSE_CONNECTIONS"):
            g.db = _take_idle(path) or open_db(path)
            g.db.kb_reuse_path = path
        else:
            g.db = open_db(path)
        g.db.kb_after_commit = current_app.extensions.get("kb.after_commit", [])
    return g.db


def mark_changed(db, case_id: int) -> None:
    """Note that a case changed in the current transaction; the after-commit hooks get
    the ids once the outermost transaction has committed (and never if it rolls back)."""
    db.__dict__.setdefault("kb_changed", set()).add(case_id)


def _after_commit(db) -> None:
    changed = db.__dict__.pop("kb_changed", set())
    if changed:
        for hook in getattr(db, "kb_after_commit", ()):
            hook(db, changed)


def _take_idle(path):
    return getattr(_idle, "connections", {}).pop(path, None)


def close_db(exc=None) -> None:
    db = g.pop("db", None)
    if db is None:
        return
    path = db.__dict__.pop("kb_reuse_path", None)
    db.__dict__.pop("kb_changed", None)
    if path is not None and db.conn.in_transaction:
        # Whatever a request left uncommitted is discarded, as closing would discard it.
        log.warning("a request left a transaction open; rolled back")
        db.conn.rollback()
    connections = _idle.__dict__.setdefault("connections", {})
    if path is None or path in connections:  # not reused, or a nested context's second one
        db.close()
    else:
        connections[path] = db


@contextlib.contextmanager
def transaction(db: sqlite_utils.Database):
    """One unit of work: commit at the end, roll back on any exception.

    The outermost block takes the write lock at once (BEGIN IMMEDIATE), so two requests
    that read then write wait for each other instead of failing with "database is locked".
    Nested blocks become savepoints.
    """
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    # Threads of this process queue for the write lock here, in turn, instead of in
    # SQLite's busy handler, which polls with sleeps of up to 100 ms: with 200 people
    # answering a 自己点検, those sleeps — not the work — made the answers slow.
    # Other processes still meet the busy timeout.
    with _writer_lock(db):
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.rollback()
            db.__dict__.pop("kb_changed", None)
            raise
        db.conn.execute("COMMIT")
    _after_commit(db)


def write_alone(db: sqlite_utils.Database, sql: str, parameters=()) -> int:
    """Run one writing statement as a transaction of its own (SQLite's autocommit: the
    statement and its commit are one step), queued with this process's other writers as
    ``transaction`` does; return how many rows it changed. For a hot path whose checks fit
    in the statement's WHERE: each statement of a ``transaction`` hands Python's GIL over
    and back while the write lock is held, and with many requests at once the lock's
    holder waited for the GIL while the other writers waited for the lock. Inside a
    transaction the statement is simply part of it (e.g. `init --demo`, all or nothing)."""
    if db.conn.in_transaction:
        return db.conn.execute(sql, parameters).rowcount
    with _writer_lock(db):
        level = db.conn.isolation_level
        db.conn.isolation_level = None  # autocommit: no implicit BEGIN before the statement
        try:
            return db.conn.execute(sql, parameters).rowcount
        finally:
            db.conn.isolation_level = level


_writer_locks: dict[str, threading.RLock] = {}
_writer_locks_guard = threading.Lock()


def _writer_lock(db) -> threading.RLock:
    """The lock of this process's writers to ``db``'s file (re-entrant: a thread that
    writes to a second connection of the same file inside a transaction does not wait
    for itself here, only, as before, in SQLite)."""
    lock = db.__dict__.get("kb_writer_lock")
    if lock is None:
        path = db.conn.execute("PRAGMA database_list").fetchone()[2]
        with _writer_locks_guard:
            lock = db.__dict__["kb_writer_lock"] = _writer_locks.setdefault(path, threading.RLock())
    return lock


def init_app(app) -> None:
    app.teardown_appcontext(close_db)


def utcnow() -> str:
    """The current time as UTC ISO-8601, the format of every *_at column."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
