"""Backups: a consistent copy of the live database, and putting one back.

SQLite's online backup API copies the database page by page while the app keeps
running; the copy is checked with ``PRAGMA integrity_check`` before it is reported done.
The search index is not backed up: it is rebuilt from the database.

A restore must never lose a save. The database runs in WAL mode, so the newest saves may
live only in ``kb.sqlite3-wal`` (after a crash, or while the app runs); the restore
therefore refuses while any process has the database open and keeps the current
database, WAL included, before it writes the backup over it. Two locks tell it that
the database is in use: ``flask serve`` holds a shared ``flock`` on ``kb.sqlite3.lock``
for as long as it runs (it holds no SQLite connection between requests), and any open
SQLite connection keeps a lock that SQLite's exclusive locking mode cannot get past.
"""

import fcntl
import os
import shutil
import sqlite3
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path

from kb.db import DATABASE_FILE, database_path
from kb.exceptions import Invalid

LOCK_FILE = DATABASE_FILE + ".lock"
KEPT_PREFIX = DATABASE_FILE + ".before-restore-"

APP_RUNNING = ("アプリが動いています（{lock} が使用中です）。アプリを停止してから、"
               "もう一度復元してください。")
DATABASE_IN_USE = ("別のプロセスがデータベースを開いています。アプリやデータベースを開いている"
                   "プログラムをすべて停止してから、もう一度復元してください。")
RESTORE_IN_PROGRESS = ("別の復元が実行中です（{lock} が使用中です）。その復元が終わってから、"
                       "必要ならもう一度復元してください。")
RESTORE_RUNNING = ("データベースの復元中です（{lock} が使用中です）。復元が終わってから起動してください。")

# Lock files this process holds until it exits (see hold_running_lock).
_held_locks = []


def backup(data_dir, dest) -> Path:
    """Copy the database of ``data_dir`` to ``dest``: a file (``….sqlite3``), or a folder
    (any path without a suffix) to put a dated file in. Returns the path written."""
    source = database_path(data_dir)
    if not source.exists():
        raise Invalid({"data_dir": [f"データベースがありません：{source}"]})
    dest = Path(dest)
    if dest.is_dir() or not dest.suffix:  # a folder, existing or to be made
        dest = dest / f"kb-{datetime.now():%Y%m%d-%H%M%S}.sqlite3"
    if dest.exists():
        raise Invalid({"dest": [f"既にファイルがあります（上書きしません）：{dest}"]})
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    # closing(), not the connections' own "with", which commits but leaves them open.
    with closing(sqlite3.connect(source)) as live, closing(sqlite3.connect(partial)) as copy:
        live.backup(copy)
    check(partial)
    partial.rename(dest)
    return dest


def check(path) -> None:
    """Invalid unless the database at ``path`` opens and passes SQLite's integrity check
    (a file that is not an SQLite database is a message too, not a traceback)."""
    try:
        with closing(sqlite3.connect(path)) as conn:
            result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as error:
        result = str(error)
    if result != "ok":
        raise Invalid({"backup": [f"整合性の確認に失敗しました：{result}"]})


# Tables every database of this app has had since its first migration.
BACKUP_TABLES = {"schema_migrations", "cases", "users", "audit_log"}


def check_backup(path) -> None:
    """Invalid unless ``path`` is a sound database of this app: an empty file or another
    program's SQLite file passes the integrity check, and restoring it would put an
    empty knowledge base in place of the real one."""
    check(path)
    with closing(sqlite3.connect(path)) as conn:
        tables = {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        migrations = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] \
            if "schema_migrations" in tables else 0
    if not BACKUP_TABLES <= tables or not migrations:
        raise Invalid({"source": [
            f"このアプリのバックアップではありません（空のファイルか、別のデータベースです）：{path}。"
            "データベースは元のままです。"]})


def hold_running_lock(data_dir) -> None:
    """Mark ``data_dir`` as in use by a running app until this process exits, so that
    ``restore`` refuses. Raises Invalid while a restore is under way."""
    path = Path(data_dir) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+b")
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise Invalid({"data_dir": [RESTORE_RUNNING.format(lock=path)]}) from None
    _held_locks.append(handle)  # released by the operating system when the process ends


@contextmanager
def _no_app_running(data_dir):
    """Hold ``kb.sqlite3.lock`` exclusively; Invalid while a running app holds it."""
    path = Path(data_dir) / LOCK_FILE
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # A running app holds the lock shared, another restore exclusively: say which.
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                message = RESTORE_IN_PROGRESS
            else:
                fcntl.flock(handle, fcntl.LOCK_UN)
                message = APP_RUNNING
            raise Invalid({"data_dir": [message.format(lock=path)]}) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open_exclusively(path) -> sqlite3.Connection:
    """A connection that alone holds the database until it is closed; Invalid when
    another connection (in any process) has it open.

    In WAL mode every open connection keeps a shared lock, even between transactions;
    EXCLUSIVE locking mode needs the database file to itself and keeps it to the end.
    """
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("COMMIT")
    except sqlite3.OperationalError:
        conn.close()
        raise Invalid({"data_dir": [DATABASE_IN_USE]}) from None
    return conn


def _reserve_kept_name(target: Path) -> Path:
    """A new, empty file beside ``target`` for the database being replaced. Created with
    O_EXCL, so two restores never write to the same one, even within a second."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    for attempt in range(1000):
        kept = target.with_name(KEPT_PREFIX + stamp + (f"-{attempt}" if attempt else ""))
        try:
            os.close(os.open(kept, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            continue
        return kept
    raise Invalid({"data_dir": ["退避用のファイル名を作れませんでした。"]})


def restore(source, data_dir) -> Path:
    """Put a backup in place as the database of ``data_dir``; returns its path.

    Refused (Invalid, nothing changed) while the app runs or any other process has the
    database open. The current database, if any, is first copied with everything in its
    WAL to a new file ``kb.sqlite3.before-restore-<date>-<time>-<microseconds>`` beside
    it (never one that exists); the backup is then written over the database in one
    SQLite transaction, so a crash leaves either the old database or the restored one.
    The search index is removed so that the app rebuilds it from the restored database.
    """
    source = Path(source)
    target = database_path(data_dir)
    if target.exists() and source.exists() and os.path.samefile(source, target):
        # The restore holds the database exclusively while it copies the backup in: read
        # from that same file, the copy would wait for itself for ever.
        raise Invalid({"source": [
            f"復元元が、いま使っているデータベースそのものです：{source}。"
            "backup で作ったファイルを指定してください（何も変更していません）。"]})
    check_backup(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _no_app_running(data_dir):
        existed = target.exists()
        live = _open_exclusively(target)
        try:
            if existed:
                kept = _reserve_kept_name(target)
                try:
                    with closing(sqlite3.connect(kept)) as copy:
                        live.backup(copy)  # reads through the WAL: the newest saves included
                    check(kept)
                except BaseException:
                    kept.unlink(missing_ok=True)
                    raise
            try:
                with closing(sqlite3.connect(source)) as backup_copy:
                    backup_copy.backup(live)
            except sqlite3.Error as error:  # e.g. another page size: the database is unchanged
                raise Invalid({"source": [
                    f"復元できませんでした（データベースは元のままです）：{error}"]}) from None
        finally:
            live.close()  # the last connection: SQLite checkpoints and removes the WAL
        check(target)
    for index in Path(data_dir).glob("index-v*"):
        shutil.rmtree(index, ignore_errors=True)
    return target
