"""Backups: a consistent copy of the live database, and putting one back.

SQLite's online backup API copies the database page by page while the app keeps
running; the copy is checked with ``PRAGMA integrity_check`` before it is reported done.
The search index is not backed up: it is rebuilt from the database.
"""

import shutil
import sqlite3
from datetime import datetime
from pathlib import Path

from kb.db import DATABASE_FILE, database_path
from kb.exceptions import Invalid


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
    with sqlite3.connect(source) as live, sqlite3.connect(partial) as copy:
        live.backup(copy)
    check(partial)
    partial.rename(dest)
    return dest


def check(path) -> None:
    """Invalid unless the database at ``path`` passes SQLite's integrity check."""
    with sqlite3.connect(path) as conn:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        raise Invalid({"backup": [f"整合性の確認に失敗しました：{result}"]})


def restore(source, data_dir) -> Path:
    """Put a backup in place as the database of ``data_dir`` (the app must be stopped).

    The old database, if any, is kept beside it as ``kb.sqlite3.before-restore-…``; the
    search index is removed so that the app rebuilds it from the restored database.
    """
    source = Path(source)
    check(source)
    target = database_path(data_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.rename(target.with_name(f"{DATABASE_FILE}.before-restore-{datetime.now():%Y%m%d-%H%M%S}"))
    for stale in (target.with_name(DATABASE_FILE + "-wal"), target.with_name(DATABASE_FILE + "-shm")):
        stale.unlink(missing_ok=True)
    shutil.copyfile(source, target)
    for index in Path(data_dir).glob("index-v*"):
        shutil.rmtree(index, ignore_errors=True)
    return target
