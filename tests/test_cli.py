import re

import pytest

from kb import cli, users
from kb.db import get_db
from tests.conftest import make_app

TABLES = ("departments", "users", "user_roles", "cases", "countermeasures", "checklist_versions",
          "checklist_items", "audit_log")


@pytest.fixture
def fresh_app(tmp_path):
    return make_app(tmp_path)


def snapshot(app):
    with app.app_context():
        db = get_db()
        return {table: db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
                for table in TABLES}


def test_init_loads_the_seed_data(fresh_app):
    result = fresh_app.test_cli_runner().invoke(args=["init"])
    assert result.exit_code == 0, result.output
    assert "external cases added: 180" in result.output
    assert "checklist: version 2024, 57 items" in result.output
    with fresh_app.app_context():
        db = get_db()
        assert db.execute("SELECT count(*) FROM cases WHERE origin = 'external'"
                          " AND status = 'published'").fetchone()[0] == 180
        assert db["departments"].count == 38
        assert db["checklist_items"].count == 57
        assert db.execute("SELECT count(*) FROM countermeasures").fetchone()[0] > 200


def test_init_on_an_existing_data_folder_changes_nothing(fresh_app):
    runner = fresh_app.test_cli_runner()
    runner.invoke(args=["init"])
    with fresh_app.app_context():
        db = get_db()
        # A reviewer's later edit must survive a second init.
        db.execute("UPDATE cases SET title = '編集済みの件名' WHERE external_id = 'ext-0001'")
        db.execute("UPDATE departments SET name = '改称した課' WHERE code = 'kumin-koseki'")
    before = snapshot(fresh_app)
    result = runner.invoke(args=["init"])
    assert result.exit_code == 0, result.output
    assert "migrations applied: 0" in result.output
    assert "external cases added: 0, already present: 180" in result.output
    assert snapshot(fresh_app) == before


def test_init_demo_creates_one_account_per_role_with_working_passwords(fresh_app):
    runner = fresh_app.test_cli_runner()
    result = runner.invoke(args=["init", "--demo"])
    assert result.exit_code == 0, result.output
    printed = dict(re.findall(r"^  (demo-\S+)\s+(\S+)", result.output, re.MULTILINE))
    assert sorted(printed) == sorted(login for login, *_ in cli.DEMO_ACCOUNTS)
    with fresh_app.app_context():
        db = get_db()
        for login, name, department, roles in cli.DEMO_ACCOUNTS:
            user = users.authenticate(db, login, printed[login])
            assert user is not None and user.roles == frozenset(roles)
    again = runner.invoke(args=["init", "--demo"])
    assert "already created" in again.output
    assert not re.search(r"^  demo-", again.output, re.MULTILINE)


def test_create_user_asks_for_the_password_twice(fresh_app):
    runner = fresh_app.test_cli_runner()
    runner.invoke(args=["init"])
    result = runner.invoke(args=["create-user", "--login", "sato", "--name", "佐藤 花子",
                                 "--department", "保育課", "--role", "staff", "--role", "manager"],
                           input="a-long-password\na-long-password\n")
    assert result.exit_code == 0, result.output
    assert "created user sato" in result.output
    with fresh_app.app_context():
        user = users.authenticate(get_db(), "sato", "a-long-password")
    assert user.department_name == "保育課"
    assert user.roles == frozenset({"staff", "manager"})


def test_create_user_reports_bad_input_in_japanese_and_creates_nothing(fresh_app):
    runner = fresh_app.test_cli_runner()
    runner.invoke(args=["init"])
    result = runner.invoke(args=["create-user", "--login", "sato", "--name", "佐藤",
                                 "--department", "保育課", "--role", "staff"],
                           input="short\nshort\n")
    assert result.exit_code == 1
    assert "パスワードは10文字以上にしてください。" in result.output
    unknown = runner.invoke(args=["create-user", "--login", "sato", "--name", "佐藤",
                                  "--department", "存在しない課", "--role", "staff"])
    assert unknown.exit_code == 2
    assert "unknown department" in unknown.output
    with fresh_app.app_context():
        assert get_db()["users"].count == 0


@pytest.mark.parametrize("command", cli.COMMANDS, ids=lambda c: c.name)
def test_every_command_has_help(fresh_app, command):
    result = fresh_app.test_cli_runner().invoke(args=[command.name, "--help"])
    assert result.exit_code == 0
    first_words = " ".join(command.help.split()[:4])
    assert command.help and first_words in " ".join(result.output.split())
