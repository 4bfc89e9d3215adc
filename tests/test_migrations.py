import sqlite3

import pytest

from kb.db import open_db
from kb.migrations import MIGRATIONS, applied_migrations, migrate


@pytest.fixture
def fresh_db(tmp_path):
    db = open_db(tmp_path / "fresh.sqlite3")
    yield db
    db.close()


def test_migrate_creates_every_table(fresh_db):
    migrate(fresh_db)
    for table in ("departments", "users", "user_roles", "cases", "countermeasures",
                  "checklist_versions", "checklist_sections", "checklist_items",
                  "countermeasure_checklist_items", "case_checklist_items", "comments",
                  "audit_log", "schema_migrations"):
        assert fresh_db[table].exists(), table


def test_migrate_twice_applies_nothing_the_second_time(fresh_db):
    assert len(migrate(fresh_db)) == len(MIGRATIONS)
    schema = fresh_db.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    assert migrate(fresh_db) == []
    assert fresh_db.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == schema
    assert applied_migrations(fresh_db) == [number for number, _, _ in MIGRATIONS]


def test_database_uses_wal_and_foreign_keys(fresh_db):
    assert fresh_db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert fresh_db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_foreign_keys_are_enforced(fresh_db):
    migrate(fresh_db)
    with pytest.raises(sqlite3.IntegrityError):
        fresh_db.execute(
            "INSERT INTO users (login, display_name, department_id, password_hash, created_at,"
            " updated_at) VALUES ('x', 'x', 999, 'h', 'now', 'now')")


def test_audit_log_cannot_be_changed_or_deleted(fresh_db):
    migrate(fresh_db)
    fresh_db["audit_log"].insert({"at": "2026-01-01T00:00:00+00:00", "actor": "cli",
                                  "action": "test"})
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        fresh_db.execute("UPDATE audit_log SET action = 'changed'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        fresh_db.execute("DELETE FROM audit_log")
    assert fresh_db.execute("SELECT action FROM audit_log").fetchall() == [("test",)]


def test_case_vocabulary_is_enforced_by_the_schema(fresh_db):
    migrate(fresh_db)
    with pytest.raises(sqlite3.IntegrityError):
        fresh_db.execute(
            "INSERT INTO cases (kind, origin, status, title, created_at, updated_at)"
            " VALUES ('rumour', 'internal', 'draft', 't', 'now', 'now')")
