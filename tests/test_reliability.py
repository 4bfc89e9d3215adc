"""Nothing acknowledged is lost: index failures, backups and restores, a killed server."""

import http.cookiejar
import logging
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest

from kb import backup, search, users
from kb.db import database_path, get_db
from tests.conftest import PASSWORD, add_user, login, make_app
from tests.reporting import file_report, near_miss_form

ROOT = Path(__file__).resolve().parent.parent


def test_a_reused_connection_starts_each_request_clean(data_dir):
    """Under `serve` each worker thread keeps its connection between requests: what one
    request left uncommitted is rolled back, not seen by the next, and a nested context
    gets a connection of its own."""
    app = make_app(data_dir, REUSE_CONNECTIONS=True)
    app.test_cli_runner().invoke(args=["init"])
    with app.app_context():
        first = get_db()
        first.execute("BEGIN")
        first.execute("INSERT INTO departments (code, name, created_at) VALUES ('left-open', '未確定課', '')")
        first.kb_changed = {1}
    with app.app_context():
        again = get_db()
        assert again is first and not again.conn.in_transaction
        assert again.execute("SELECT count(*) FROM departments WHERE code = 'left-open'").fetchone()[0] == 0
        assert not again.__dict__.get("kb_changed")
        with app.app_context():
            nested = get_db()
            assert nested is not again  # nested: its own connection
    with app.app_context():
        assert get_db() in (again, nested)  # one of the two was kept, the other closed
    plain = make_app(data_dir)  # outside `serve`: a connection per context, closed after it
    with plain.app_context():
        one = get_db()
    with plain.app_context():
        assert get_db() is not one


def _damage_index(data_dir) -> None:
    """Cut every segment file of the index short, as a full disk or a bad copy would."""
    for segment in search.index_path(data_dir).glob("*.seg"):
        segment.write_bytes(segment.read_bytes()[:1000])


def test_a_damaged_index_is_rebuilt_when_the_app_starts(data_dir):
    _damage_index(data_dir)
    assert not search.is_current(data_dir)
    app = make_app(data_dir)  # the start finds it unreadable and rebuilds it from SQLite
    assert search.is_current(data_dir)
    with app.app_context():
        result = search.search_cases(search.get_index(data_dir), get_db(), users.READER, "FAX")
    assert result.total > 0 and search.UNAVAILABLE not in result.notices


def test_search_answers_from_sqlite_while_a_damaged_index_is_rebuilt(data_dir, caplog):
    app = make_app(data_dir)
    add_user(app, "hanako", "staff")
    client = app.test_client()
    login(client, "hanako")
    assert search.UNAVAILABLE not in client.get("/cases?q=FAX").get_data(as_text=True)
    with app.app_context():
        case_id = get_db().execute("SELECT case_id FROM cases WHERE title LIKE '%FAX%'"
                                   " AND status = 'published' LIMIT 1").fetchone()[0]
    _damage_index(data_dir)
    search._forget(data_dir)  # a searcher opened after the damage
    with caplog.at_level(logging.ERROR, logger="kb.search"):
        response = client.get("/cases?q=FAX+誤送信")  # not answered from the result cache
        page = response.get_data(as_text=True)
        assert response.status_code == 200 and search.UNAVAILABLE in page
        assert re.search(r'href="/cases/\d+', page)  # found by the SQLite listing meanwhile
        assert client.get(f"/cases/{case_id}").status_code == 200  # no similar cases, no error
    assert "search index unreadable" in caplog.text
    for _ in range(600):  # the rebuild runs in the background
        if not search._recovering:
            break
        time.sleep(0.05)
    assert search.is_current(data_dir)
    page = client.get("/cases?q=FAX+誤送信&sort=date").get_data(as_text=True)
    assert search.UNAVAILABLE not in page and re.search(r'href="/cases/\d+\?q=', page)


def test_a_held_index_lock_does_not_fail_the_save_and_check_heals_it(data_dir, make_user, caplog):
    app = make_app(data_dir, INDEX_WRITER_TIMEOUT=0.2)
    add_user(app, "hanako", "staff")
    client = app.test_client()
    login(client, "hanako")
    ix = search.get_index(data_dir)
    writer = ix.writer()  # another process holds the index
    try:
        with caplog.at_level(logging.ERROR, logger="kb.search"):
            case_id = file_report(client, "near_miss", near_miss_form(summary="索引が書けない間の報告。"))
    finally:
        writer.cancel()
    assert "could not update the search index" in caplog.text
    with app.app_context():
        assert get_db().execute("SELECT summary FROM cases WHERE case_id = ?", [case_id]).fetchone()[0] \
            == "索引が書けない間の報告。"
    result = app.test_cli_runner().invoke(args=["reindex", "--check"])
    assert result.exit_code == 1 and f"missing: 1 ({case_id})" in result.output
    assert app.test_cli_runner().invoke(args=["reindex", "--check"]).exit_code == 0


def test_a_broken_index_folder_does_not_fail_the_save(data_dir, caplog):
    app = make_app(data_dir)
    add_user(app, "hanako", "staff")
    index = search.index_path(data_dir)
    shutil.rmtree(index)
    index.write_text("not a folder")  # the disk says no
    search._forget(data_dir)
    client = app.test_client()
    login(client, "hanako")
    with caplog.at_level(logging.ERROR, logger="kb.search"):
        case_id = file_report(client, "near_miss")
    assert "could not update the search index" in caplog.text
    with app.app_context():
        assert get_db().execute("SELECT count(*) FROM cases WHERE case_id = ?", [case_id]).fetchone()[0] == 1
    index.unlink()
    restarted = make_app(data_dir)  # a missing index is rebuilt at start, the new case included
    with restarted.app_context():
        assert search.check(search.get_index(data_dir), get_db()) == {"missing": [], "stale": [], "orphaned": []}


def test_backup_while_running_restores_into_a_new_folder_with_the_same_cases(app, data_dir, tmp_path):
    with app.app_context():
        db = get_db()  # the app holds the database open, in WAL mode
        db.execute("UPDATE cases SET title = title || '（バックアップ前）' WHERE external_id = 'ext-0001'")
        expected = db.execute("SELECT case_id, title, version FROM cases ORDER BY case_id").fetchall()
        result = app.test_cli_runner().invoke(args=["backup", str(tmp_path / "backups")])
        assert result.exit_code == 0, result.output
        copy = next((tmp_path / "backups").glob("kb-*.sqlite3"))
    target = tmp_path / "restored"
    backup.restore(copy, target)
    restored = make_app(target)
    with restored.app_context():
        db = get_db()
        assert db.execute("SELECT case_id, title, version FROM cases ORDER BY case_id").fetchall() == expected
        hits = search.search_cases(search.get_index(target), db, users.READER, "バックアップ前")
        assert hits.hits[0]["external_id"] == "ext-0001"
    again = app.test_cli_runner().invoke(args=["backup", str(copy)])
    assert again.exit_code == 1 and "上書きしません" in again.output


def test_restore_command_keeps_the_old_database(app, data_dir, tmp_path):
    copy = backup.backup(data_dir, tmp_path / "copy.sqlite3")
    result = app.test_cli_runner().invoke(args=["restore", str(copy), "--yes"])
    assert result.exit_code == 0, result.output
    assert list(Path(data_dir).glob("kb.sqlite3.before-restore-*"))
    assert not search.is_current(data_dir)


@pytest.mark.parametrize("content", [b"", b"SQLite format 3\x00garbage", os.urandom(4096), None],
                         ids=["empty file", "truncated header", "random bytes", "another program's database"])
def test_restore_refuses_a_file_that_is_not_a_backup_of_this_app(app, data_dir, tmp_path, content):
    """An empty file passes SQLite's integrity check: restoring one put an empty database
    in place of the real one; a corrupt file printed a traceback."""
    source = tmp_path / "not-a-backup.sqlite3"
    if content is None:
        with closing(sqlite3.connect(source)) as conn:
            conn.execute("CREATE TABLE cases (id INTEGER)")
            conn.commit()
    else:
        source.write_bytes(content)
    before = title_of_ext_0001(database_path(data_dir))
    result = app.test_cli_runner().invoke(args=["restore", str(source), "--yes"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    assert "バックアップではありません" in result.output or "整合性の確認に失敗しました" in result.output
    assert title_of_ext_0001(database_path(data_dir)) == before
    assert not kept_databases(data_dir)


def test_restoring_the_live_database_onto_itself_is_refused_at_once(app, data_dir):
    """`restore data/kb.sqlite3` waited for itself for ever, holding the data folder."""
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "restore", "--yes",
         str(database_path(data_dir))], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env=dict(os.environ, KB_DATA_DIR=str(data_dir), KB_SECRET_KEY="restore-test-secret"))
    assert result.returncode == 1, result.stderr
    assert "いま使っているデータベースそのものです" in result.stderr
    assert not kept_databases(data_dir)


# A process that holds the database open: it saves (the change stays in the WAL, since
# automatic checkpoints are off), says so, then waits to be killed or stopped.
HOLDER = """
import sys, time
from kb.db import open_db, transaction
db = open_db(sys.argv[1])
db.execute("PRAGMA wal_autocheckpoint = 0")
with transaction(db):
    db.execute("UPDATE cases SET title = ? WHERE external_id = 'ext-0001'", [sys.argv[2]])
print("saved", flush=True)
time.sleep(120)
"""


def hold_database(data_dir, title):
    """Start a process that saves ``title`` and keeps the database open; return it once saved."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(database_path(data_dir)), title],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "saved"
    return process


def title_of_ext_0001(path) -> str:
    conn = sqlite3.connect(path)  # closed at once: an open connection would block a restore
    try:
        return conn.execute("SELECT title FROM cases WHERE external_id = 'ext-0001'").fetchone()[0]
    finally:
        conn.close()


def kept_databases(data_dir) -> list[Path]:
    return sorted(Path(data_dir).glob("kb.sqlite3.before-restore-*"))


def test_restore_keeps_saves_that_a_crashed_process_left_only_in_the_wal(data_dir, tmp_path):
    copy = backup.backup(data_dir, tmp_path / "copy.sqlite3")
    crashed = hold_database(data_dir, "WALにだけある保存")
    crashed.send_signal(signal.SIGKILL)
    crashed.wait()
    assert Path(f"{database_path(data_dir)}-wal").stat().st_size > 0  # the save is in the WAL only

    backup.restore(copy, data_dir)

    [kept] = kept_databases(data_dir)
    assert title_of_ext_0001(kept) == "WALにだけある保存"
    assert title_of_ext_0001(database_path(data_dir)) == title_of_ext_0001(copy)
    backup.check(kept)


def test_restore_is_refused_while_another_process_has_the_database_open(app, data_dir, tmp_path):
    copy = backup.backup(data_dir, tmp_path / "copy.sqlite3")
    holder = hold_database(data_dir, "開いたままの間の保存")
    try:
        result = app.test_cli_runner().invoke(args=["restore", str(copy), "--yes"])
        assert result.exit_code == 1
        assert "別のプロセスがデータベースを開いています" in result.output
        assert kept_databases(data_dir) == []
        assert search.is_current(data_dir)
    finally:
        holder.terminate()
        holder.wait()
    assert title_of_ext_0001(database_path(data_dir)) == "開いたままの間の保存"
    result = app.test_cli_runner().invoke(args=["restore", str(copy), "--yes"])
    assert result.exit_code == 0, result.output
    assert title_of_ext_0001(kept_databases(data_dir)[0]) == "開いたままの間の保存"


def test_restore_is_refused_while_the_server_runs_even_between_requests(app, data_dir, tmp_path):
    copy = backup.backup(data_dir, tmp_path / "copy.sqlite3")
    server = start_server(data_dir, free_port())
    try:
        time.sleep(1)  # idle: the server holds no SQLite connection now
        result = app.test_cli_runner().invoke(args=["restore", str(copy), "--yes"])
        assert result.exit_code == 1
        assert "アプリが動いています" in result.output
        assert kept_databases(data_dir) == []
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert app.test_cli_runner().invoke(args=["restore", str(copy), "--yes"]).exit_code == 0


def test_restores_within_one_second_each_keep_the_database_they_replaced(data_dir, tmp_path):
    copy = backup.backup(data_dir, tmp_path / "copy.sqlite3")
    for n in range(3):
        with sqlite3.connect(database_path(data_dir)) as conn:
            conn.execute("UPDATE cases SET title = ? WHERE external_id = 'ext-0001'", [f"復元前 {n}"])
        conn.close()
        backup.restore(copy, data_dir)
    assert sorted(title_of_ext_0001(kept) for kept in kept_databases(data_dir)) == \
        ["復元前 0", "復元前 1", "復元前 2"]


def test_a_second_restore_while_one_runs_is_refused_and_says_so(app, data_dir, tmp_path):
    """Two restores at once: the second changes nothing and does not claim the app is running."""
    copy = backup.backup(data_dir, tmp_path / "copy.sqlite3")
    with backup._no_app_running(data_dir):
        result = app.test_cli_runner().invoke(args=["restore", str(copy), "--yes"])
    assert result.exit_code == 1
    assert "別の復元が実行中です" in result.output and "アプリが動いています" not in result.output
    assert not kept_databases(data_dir)


def test_a_server_does_not_start_while_a_restore_holds_the_data_folder(data_dir):
    with backup._no_app_running(data_dir):
        result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "serve"], cwd=ROOT,
                                env=dict(os.environ, KB_DATA_DIR=str(data_dir),
                                         KB_SECRET_KEY="restore-test-secret", KB_PORT=str(free_port())),
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "データベースの復元中です" in result.stderr


# --- a server killed while staff are filing -----------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir, port):
    env = dict(os.environ, KB_DATA_DIR=str(data_dir), KB_SECRET_KEY="crash-test-secret",
               KB_PORT=str(port), KB_LOGIN_RATE_LIMIT="1000 per minute", KB_THREADS="4")
    process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "serve"], cwd=ROOT,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=1)
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not start")


class Reporter:
    """A member of staff filing near-misses over HTTP, remembering what was acknowledged."""

    def __init__(self, base, login_id):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        page = self.opener.open(base + "/login", timeout=5).read().decode()
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        self.opener.open(base + "/login", urllib.parse.urlencode(
            {"csrf_token": token, "login": login_id, "password": PASSWORD}).encode(), timeout=5)
        self.acknowledged = {}

    def file(self, number):
        page = self.opener.open(self.base + "/reports/new/near_miss", timeout=5).read().decode()
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        summary = f"停止試験の報告 {number} 番：封入前に宛名を読み合わせて気づいた。"
        response = self.opener.open(self.base + "/reports/new/near_miss", urllib.parse.urlencode({
            "csrf_token": token, "action": "save", "summary": summary,
            "how_found": "読み合わせ", "task": "postal"}).encode(), timeout=5)
        case_id = int(re.search(r"/reports/(\d+)/edit", response.geturl()).group(1))
        self.acknowledged[case_id] = summary


def test_killing_the_server_mid_filing_loses_nothing_acknowledged(data_dir):
    app = make_app(data_dir)
    for n in range(3):
        add_user(app, f"filer{n}", "staff")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(data_dir, port)
    reporters = [Reporter(base, f"filer{n}") for n in range(3)]
    stop = threading.Event()

    def keep_filing(reporter, offset):
        number = offset
        while not stop.is_set():
            try:
                reporter.file(number)
            except Exception:  # the server died under us: not acknowledged
                return
            number += 3

    threads = [threading.Thread(target=keep_filing, args=(r, i)) for i, r in enumerate(reporters)]
    for thread in threads:
        thread.start()
    time.sleep(3)
    server.send_signal(signal.SIGKILL)
    server.wait()
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    acknowledged = {k: v for r in reporters for k, v in r.acknowledged.items()}
    assert len(acknowledged) >= 5

    with sqlite3.connect(database_path(data_dir)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = dict(conn.execute("SELECT case_id, summary FROM cases WHERE origin = 'internal'"))
    for case_id, summary in acknowledged.items():
        assert stored.get(case_id) == summary

    server = start_server(data_dir, port)  # the restart repairs the index in the background
    try:
        app = make_app(data_dir)
        deadline = time.time() + 30
        while time.time() < deadline:
            with app.app_context():
                drift = search.check(search.get_index(data_dir), get_db())
            if not any(drift.values()):
                break
            time.sleep(0.5)
        assert drift == {"missing": [], "stale": [], "orphaned": []}
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_load_script_runs_its_own_checks_and_reports_every_action():
    """A short run of scripts/bench_load.py: its end-of-run checks (nothing lost or
    duplicated, every report found by search, index in line, no 5xx) decide its exit code."""
    result = subprocess.run(
        [sys.executable, "scripts/bench_load.py", "--users", "3", "--seconds", "3", "--think", "0.2"],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.stdout
    assert "3 users for" in report and "pausing 0.2 s on average" in report
    for line in ("file (whole step)", "search (whole step)", "submit POST alone"):
        assert re.search(rf"{re.escape(line)}\s+n=\s*\d+\s+p50\s+[\d.]+ ms", report), line
    assert "errors: none" in report
    assert re.search(r"acknowledged reports: [1-9]\d*; lost or changed: 0; duplicated: 0;"
                     r" integrity: ok", report)
    assert re.search(r"search: (\d+) of \1 acknowledged reports found", report)
    assert "reindex --check: exit 0" in report
