"""The staff roster (職員名簿): importing 人事's CSV, status history, who could take part."""

import json
from datetime import date

import pytest

from kb import audit, roster, staff, users
from kb.db import get_db
from kb.exceptions import Forbidden, Invalid
from tests.conftest import PASSWORD, make_app

HEADER_JA = ["職員番号", "氏名", "氏名カナ", "所属", "役職", "在籍区分", "区分開始日", "区分終了日",
             "メールアドレス"]
HEADER_EN = ["employee_number", "name", "name_kana", "department", "position", "status",
             "status_from", "status_until", "email"]
MANAGERS = frozenset({"課長", "所長", "園長", "室長", "館長", "所属長"})


def person(number, name=None, department="kumin-koseki", position="主事", status="",
           start="", until="", email="", kana="ショクイン"):
    return [number, name or f"職員 {number}", kana, department, position, status, start, until,
            email]


def roster_bytes(rows, header=HEADER_JA, encoding="cp932", delimiter=",", bom=False):
    text = "\r\n".join(delimiter.join(row) for row in [header, *rows]) + "\r\n"
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding)


@pytest.fixture
def write_roster(tmp_path):
    def write(rows, name="roster.csv", **options):
        path = tmp_path / name
        path.write_bytes(rows if isinstance(rows, bytes) else roster_bytes(rows, **options))
        return path
    return write


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()

    def run(*args):
        return runner.invoke(args=[str(arg) for arg in args])
    return run


def import_json(cli, path, *options):
    result = cli("import-staff", path, "--json", *options)
    return result.exit_code, json.loads(result.stdout)


def snapshot(db):
    return [db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("users", "user_roles", "staff_status_periods", "staff_assignments",
                          "audit_log")]


def account(db, login):
    return db.execute_returning_dicts("SELECT * FROM users WHERE login = ?", [login])[0]


def run_import(db, rows, today, **options):
    return roster.import_staff(db, users.SYSTEM, roster_bytes(rows), "roster.csv",
                               managers=MANAGERS, today=date.fromisoformat(today), **options)


# --- reading the file ----------------------------------------------------------------------

def test_cp932_roster_creates_roster_accounts_without_a_password(db, cli, write_roster):
    path = write_roster([person("100001", "山田　太郎", department="戸籍住民課", position="課長",
                                email="yamada@example.jp"),
                         person("100002", "佐藤 花子", status="育児休業", start="2026/4/1",
                                until="令和9年3月31日")])
    code, summary = import_json(cli, path)
    assert code == 0
    assert summary == {"added": 2, "updated": 0, "unchanged": 0, "deactivated": 0, "errors": []}
    yamada = account(db, "100001")
    assert (yamada["employee_number"], yamada["display_name"], yamada["email"], yamada["source"],
            yamada["password_hash"]) == ("100001", "山田　太郎", "yamada@example.jp", "roster", "")
    assert users.get_user(db, yamada["user_id"]).roles == {"staff", "manager"}
    sato = account(db, "100002")
    assert [(p["status"], p["starts_on"], p["ends_on"], p["source"])
            for p in staff.status_history(db, users.SYSTEM, sato["user_id"])] == [
        ("childcare_leave", "2026-04-01", "2027-03-31", "roster")]
    assert db.execute("SELECT count(*) FROM audit_log WHERE action = 'staff_import'").fetchone()[0] == 1


def test_an_account_without_a_password_cannot_sign_in_and_costs_a_full_hash_check(
        db, cli, write_roster, monkeypatch):
    cli("import-staff", write_roster([person("100001")]))
    checked = []
    real_check = users.check_password_hash
    monkeypatch.setattr(users, "check_password_hash",
                        lambda stored, given: checked.append(stored) or real_check(stored, given))
    assert users.authenticate(db, "100001", "") is None
    assert users.authenticate(db, "100001", "anything-at-all") is None
    assert checked == [users._dummy_hash()] * 2


def test_local_accounts_still_sign_in_with_their_password(db, make_user):
    make_user("local-staff", "staff")
    assert users.authenticate(db, "local-staff", PASSWORD).login == "local-staff"


@pytest.mark.parametrize("options", [
    {"encoding": "utf-8", "bom": True, "header": HEADER_EN, "delimiter": "\t"},
    {"encoding": "utf-8", "delimiter": "\t"},
    {"encoding": "cp932", "delimiter": "\t", "header": HEADER_EN},
], ids=["utf8-bom-tab-english", "utf8-tab-japanese", "cp932-tab-english"])
def test_bom_tab_and_english_headers_are_read_alike(db, cli, write_roster, options):
    path = write_roster([person("200001", "髙橋 﨑子", department="課税課")], **options)
    code, summary = import_json(cli, path)
    assert (code, summary["added"]) == (0, 1)
    assert account(db, "200001")["display_name"] == "髙橋 﨑子"


def test_columns_the_app_does_not_keep_are_ignored_and_named(db, cli, write_roster):
    header = [*HEADER_JA, "生年月日", "採用年月日"]
    path = write_roster([person("210001") + ["1980-01-01", "2003-04-01"]], header=header)
    result = cli("import-staff", path)
    assert result.exit_code == 0
    assert "取り込まなかった列: 生年月日、採用年月日" in result.output
    assert "1980" not in str(db.execute("SELECT * FROM users").fetchall())


def test_a_column_given_twice_is_reported_on_the_header_line(cli, write_roster):
    header = [*HEADER_JA, "name"]
    code, summary = import_json(cli, write_roster([person("220001") + ["X"]], header=header))
    assert code == 1
    assert [(e["line"], e["column"]) for e in summary["errors"]] == [(1, "氏名")]


def test_reimporting_the_same_file_changes_nothing_and_says_so(db, cli, write_roster):
    path = write_roster([person(f"3000{i:02d}", status="病気休暇" if i == 3 else "",
                                start="2026-01-05" if i == 3 else "") for i in range(10)])
    assert import_json(cli, path)[1]["added"] == 10
    before = snapshot(db)
    code, summary = import_json(cli, path)
    assert (code, summary) == (0, {"added": 0, "updated": 0, "unchanged": 10, "deactivated": 0,
                                   "errors": []})
    assert snapshot(db) == before
    assert "変更はありません" in cli("import-staff", path).output


def test_dry_run_reports_the_changes_and_writes_nothing(db, cli, write_roster):
    before = snapshot(db)
    result = cli("import-staff", write_roster([person("400001")]), "--dry-run")
    assert result.exit_code == 0 and "（試行）新規 1人" in result.output
    assert snapshot(db) == before


def test_changes_are_listed_with_the_fields_they_touch(db, cli, write_roster):
    cli("import-staff", write_roster([person("500001"), person("500002")]))
    path = write_roster([person("500001", department="kumin-kazei", position="課長"),
                         person("500002")])
    plan = roster.import_staff_file(db, users.SYSTEM, path, managers=MANAGERS, dry_run=True)
    assert [(c["employee_number"], c["fields"]) for c in plan.updated] == [
        ("500001", ["position", "department", "roles"])]
    output = cli("import-staff", path).output
    assert "更新 2行目 500001" in output and "役職、所属、所属長の役割" in output


# --- every bad input is reported with its line and column, and nothing is written --------

BAD_ROWS = {
    "duplicate employee number": (
        [person("600001"), person("600001")], 3, "職員番号", "3行目と重複"),
    "impossible date": ([person("600001", status="休職", start="2026-02-30")], 2, "区分開始日",
                        "存在する日付"),
    "until before from": ([person("600001", status="休職", start="2026-04-10", until="2026-04-01")],
                          2, "区分終了日", "区分開始日（2026-04-10）より前"),
    "unknown status": ([person("600001", status="出張中")], 2, "在籍区分", "出張中"),
    "empty name": ([["600001", "", "", "kumin-koseki", "", "", "", "", ""]], 2, "氏名",
                   "氏名がありません"),
    "e-mail that is not one": ([person("600001", email="yamada@@example")], 2, "メールアドレス",
                               "メールアドレスの形ではありません"),
    "employee number unusable as a login": ([person("ｱ1")], 2, "職員番号", "ログインID"),
}


@pytest.mark.parametrize("rows, line, column, message", BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_a_bad_row_is_reported_with_line_and_column_and_nothing_is_written(
        db, cli, write_roster, rows, line, column, message):
    before = snapshot(db)
    code, summary = import_json(cli, write_roster([person("699999"), *rows]))
    assert code == 1
    assert [(e["line"], e["column"]) for e in summary["errors"]] == [(line + 1, column)]
    assert message in summary["errors"][0]["message"]
    assert summary["added"] == 0 and snapshot(db) == before


def test_a_header_repeated_below_the_first_sheet_is_reported_as_such(db, cli, write_roster):
    pasted = roster_bytes([person("930001")]) + roster_bytes([person("930002")], header=HEADER_EN)
    before = snapshot(db)
    code, summary = import_json(cli, write_roster(pasted))
    assert code == 1
    assert summary["errors"] == [{"line": 3, "column": None, "message": summary["errors"][0]["message"]}]
    assert "見出し行がもう一度あります" in summary["errors"][0]["message"]
    assert snapshot(db) == before


def test_unknown_departments_are_listed_all_at_once(db, cli, write_roster):
    rows = [person("700001", department="福祉課"), person("700002"),
            person("700003", department="福祉課"), person("700004", department="no-such-code")]
    code, summary = import_json(cli, write_roster(rows))
    assert code == 1
    assert [(e["line"], e["column"]) for e in summary["errors"]] == [(2, "所属"), (5, "所属")]
    assert "「福祉課」" in summary["errors"][0]["message"]
    assert "2、4行目、計2行" in summary["errors"][0]["message"]
    assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 0


def test_undecodable_bytes_are_reported_with_line_and_column(db, cli, write_roster):
    good = roster_bytes([person("800001", "山田 太郎"), person("800002", "佐藤 花子")])
    broken = good.replace("佐藤".encode("cp932"), b"\x81\x20")  # a lead byte without its pair
    code, summary = import_json(cli, write_roster(broken))
    assert code == 1
    assert [(e["line"], e["column"]) for e in summary["errors"]] == [(3, "氏名")]
    assert "読み取れない文字" in summary["errors"][0]["message"]


def test_a_missing_required_column_is_reported_on_the_header_line(cli, write_roster):
    header = [h for h in HEADER_JA if h != "所属"]
    code, summary = import_json(cli, write_roster([["900001", "山田", "", "", "", "", "", ""]],
                                                  header=header))
    assert code == 1
    assert summary["errors"] == [{"line": 1, "column": "所属",
                                  "message": "見出し行に「所属」（department）の列がありません。"}]


def test_text_output_names_line_and_column_in_japanese(cli, write_roster):
    result = cli("import-staff", write_roster([person("910001", status="出張中")]))
    assert result.exit_code == 1
    assert "2行目 在籍区分: 在籍区分「出張中」" in result.output
    assert "データベースは変更していません" in result.output


# --- deactivation --------------------------------------------------------------------------

def test_a_truncated_file_is_refused_unless_confirmed(db, cli, write_roster):
    everyone = [person(f"95{i:04d}") for i in range(30)]
    cli("import-staff", write_roster(everyone))
    before = snapshot(db)
    truncated = write_roster(everyone[:20], name="truncated.csv")
    code, summary = import_json(cli, truncated, "--deactivate-missing")
    assert code == 1
    assert summary["errors"][0]["line"] is None
    assert "30件のうち10件" in summary["errors"][0]["message"]
    assert "職員 950020" in summary["errors"][0]["message"]
    assert snapshot(db) == before
    code, summary = import_json(cli, truncated, "--deactivate-missing", "--yes")
    assert (code, summary["deactivated"], summary["unchanged"]) == (0, 10, 20)
    assert not account(db, "950025")["active"]


def test_a_few_missing_people_are_deactivated_without_confirmation(db, cli, write_roster):
    everyone = [person(f"96{i:04d}") for i in range(30)]
    cli("import-staff", write_roster(everyone))
    code, summary = import_json(cli, write_roster(everyone[:-3], name="april.csv"),
                                "--deactivate-missing")
    assert (code, summary["deactivated"]) == (0, 3)
    # Without the option, people missing from the file are left alone.
    assert import_json(cli, write_roster(everyone[:-5], name="may.csv"))[1]["deactivated"] == 0


def test_retirement_deactivates_the_account_but_never_deletes_it(db, cli, write_roster):
    others = [person(f"9700{i:02d}") for i in range(2, 12)]
    cli("import-staff", write_roster([person("970001"), *others]))
    user_id = account(db, "970001")["user_id"]
    retiring = write_roster([person("970001", status="退職", start="2025-03-31"), *others])
    code, summary = import_json(cli, retiring)
    assert (code, summary["deactivated"], summary["updated"]) == (0, 1, 0)
    retired = account(db, "970001")
    assert retired["user_id"] == user_id and not retired["active"]
    assert staff.status_history(db, users.SYSTEM, user_id)[-1]["status"] == "retired"
    assert import_json(cli, retiring)[1]["unchanged"] == 11


def test_an_account_an_admin_deactivated_is_not_reactivated_by_an_import(db, cli, write_roster):
    path = write_roster([person("980001")])
    cli("import-staff", path)
    user = users.get_user(db, account(db, "980001")["user_id"])
    users.update_user(db, users.SYSTEM, user.user_id, display_name=user.display_name,
                      department_id=user.department_id, roles=user.roles, active=False)
    assert import_json(cli, path)[1]["unchanged"] == 1
    assert not account(db, "980001")["active"]


def test_an_account_an_admin_reactivated_is_placed_in_its_department_by_the_next_import(db):
    everyone = [person(f"98{i:04d}") for i in range(11)]
    run_import(db, everyone, "2026-04-01")
    run_import(db, everyone[:-1], "2026-05-01", deactivate_missing=True)
    user = users.get_user(db, account(db, "980010")["user_id"])
    users.update_user(db, users.SYSTEM, user.user_id, display_name=user.display_name,
                      department_id=user.department_id, roles=user.roles, active=True)
    plan = run_import(db, everyone, "2026-06-01", deactivate_missing=True)
    assert [(p["employee_number"], p["fields"]) for p in plan.updated] == [("980010", ["assignment"])]
    koseki = department_id(db, "kumin-koseki")
    assert "980010" in logins(staff.eligible_staff(db, koseki, "2026-06-10", "2026-06-20"))
    assert "980010" not in logins(staff.eligible_staff(db, koseki, "2026-05-10", "2026-05-20"))
    assert run_import(db, everyone, "2026-07-01").summary()["unchanged"] == 11


def test_numbers_that_lost_their_leading_zeros_in_excel_are_refused(db, cli, write_roster):
    cli("import-staff", write_roster([person("00123"), person("00124"), person("00500")]))
    before = snapshot(db)
    resaved = write_roster([person("123"), person("124"), person("00500"), person("00777")],
                           name="resaved.csv")
    code, summary = import_json(cli, resaved, "--deactivate-missing", "--yes")
    assert code == 1 and len(summary["errors"]) == 1
    error = summary["errors"][0]
    assert (error["line"], error["column"]) == (2, "職員番号")
    assert "先頭の0" in error["message"] and "「00123」" in error["message"] and "計2行" in error["message"]
    assert snapshot(db) == before


# --- roles ---------------------------------------------------------------------------------

def test_position_mapping_grants_and_removes_manager_but_never_app_granted_roles(
        db, cli, write_roster):
    cli("import-staff", write_roster([person("990001", position="課長")]))
    user = users.get_user(db, account(db, "990001")["user_id"])
    users.update_user(db, users.SYSTEM, user.user_id, display_name=user.display_name,
                      department_id=user.department_id, active=True,
                      roles={*user.roles, "reviewer", "trainer", "admin"})
    code, summary = import_json(cli, write_roster([person("990001", position="課長補佐")]))
    assert (code, summary["updated"]) == (0, 1)
    assert users.get_user(db, user.user_id).roles == {"staff", "reviewer", "trainer", "admin"}
    import_json(cli, write_roster([person("990001", position="所長")]))
    assert users.get_user(db, user.user_id).roles == {"staff", "manager", "reviewer", "trainer",
                                                      "admin"}


def test_local_accounts_keep_their_manager_role(db, cli, write_roster, make_user):
    local = make_user("local-manager", "manager")
    cli("import-staff", write_roster([person("990101")]), "--deactivate-missing", "--yes")
    assert users.get_user(db, local.user_id).roles == {"manager"}
    assert users.get_user(db, local.user_id).active


def test_the_position_table_can_be_replaced_by_a_setting(data_dir, tmp_path, write_roster):
    table = tmp_path / "positions.yaml"
    table.write_text("manager:\n  - 係長\n", encoding="utf-8")
    app = make_app(data_dir, POSITIONS_FILE=str(table))
    app.test_cli_runner().invoke(args=["import-staff", str(write_roster(
        [person("990201", position="係長"), person("990202", position="課長")]))])
    with app.app_context():
        listed = {p["login"]: p["roles"] for p in staff.list_staff(get_db(), users.SYSTEM)}
    assert listed == {"990201": ["manager", "staff"], "990202": ["staff"]}


def test_a_local_account_with_the_same_login_is_reported(db, cli, write_roster, make_user):
    make_user("990301", "staff")
    code, summary = import_json(cli, write_roster([person("990301")]))
    assert code == 1
    assert (summary["errors"][0]["line"], summary["errors"][0]["column"]) == (2, "職員番号")


# --- status history and who could take part ----------------------------------------------

def department_id(db, code):
    return users.get_department_by_code(db, code)["department_id"]


def logins(found):
    return [p["login"] for p in found]


@pytest.fixture
def history(db):
    """A: 戸籍住民課 → 課税課 in October; B: sick from October to December; C: 育休 until
    September, back in October. Imported on 2025-04-01 and 2025-10-01."""
    run_import(db, [person("A00001"), person("B00001"),
                    person("C00001", status="育児休業", start="2025-04-01", until="2025-09-30")],
               "2025-04-01")
    run_import(db, [person("A00001", department="kumin-kazei"),
                    person("B00001", status="病気休暇", start="2025-10-01", until="2025-12-31"),
                    person("C00001")], "2025-10-01")
    return db


def test_who_could_take_part_follows_the_history_of_past_periods(history):
    db = history
    koseki, kazei, kumin = (department_id(db, c) for c in ("kumin-koseki", "kumin-kazei", "kumin"))
    assert logins(staff.eligible_staff(db, koseki, "2025-05-01", "2025-05-31")) == ["A00001", "B00001"]
    assert logins(staff.eligible_staff(db, koseki, "2025-10-01", "2025-10-31")) == ["C00001"]
    assert logins(staff.eligible_staff(db, kazei, "2025-05-01", "2025-05-31")) == []
    assert logins(staff.eligible_staff(db, kazei, "2025-10-01", "2025-10-31")) == ["A00001"]
    assert logins(staff.eligible_staff(db, kumin, "2025-10-01", "2025-10-31")) == ["A00001", "C00001"]
    assert logins(staff.eligible_staff(db, koseki, "2026-01-05", "2026-01-31")) == ["B00001", "C00001"]
    days = {p["login"]: p["days"] for p in staff.eligible_staff(db, koseki, "2025-09-15", "2025-10-15")}
    assert days == {"A00001": 16, "B00001": 16, "C00001": 15}


def test_status_history_keeps_every_statement(history):
    b = account(history, "B00001")["user_id"]
    assert [(p["status"], p["starts_on"], p["ends_on"]) for p in
            staff.status_history(history, users.SYSTEM, b)] == [
        ("active", "2025-04-01", None), ("sick_leave", "2025-10-01", "2025-12-31")]


def test_a_manual_status_change_is_audited_and_outlasts_an_unchanged_roster(history):
    db = history
    a = account(db, "A00001")["user_id"]
    staff.change_status(db, users.SYSTEM, a, status="休職", starts_on="2025-11-01",
                        ends_on="2025-11-30", reason="人事課からの連絡（名簿の反映前）")
    kazei = department_id(db, "kumin-kazei")
    assert logins(staff.eligible_staff(db, kazei, "2025-11-01", "2025-11-30")) == []
    assert staff.eligible_staff(db, kazei, "2025-10-25", "2025-11-30")[0]["days"] == 7
    entry = audit.list_entries(db, users.SYSTEM, action="staff_status_change")[0]
    assert entry["target"] == "A00001" and "名簿の反映前" in entry["detail"]
    run_import(db, [person("A00001", department="kumin-kazei"),
                    person("B00001", status="病気休暇", start="2025-10-01", until="2025-12-31"),
                    person("C00001")], "2025-12-01")
    assert logins(staff.eligible_staff(db, kazei, "2025-11-01", "2025-11-30")) == []
    history_rows = staff.status_history(db, users.SYSTEM, a)
    assert history_rows[-1]["source"] == "manual" and history_rows[-1]["changed_by"] is None


def test_a_manual_status_change_needs_a_reason_and_real_dates(history):
    a = account(history, "A00001")["user_id"]
    with pytest.raises(Invalid) as refused:
        staff.change_status(history, users.SYSTEM, a, status="休職", starts_on="2025-11-31",
                            ends_on="", reason=" ")
    assert set(refused.value.errors) == {"starts_on", "reason"}


def test_a_manual_retirement_deactivates_the_account(history):
    c = account(history, "C00001")["user_id"]
    staff.change_status(history, users.SYSTEM, c, status="retired", starts_on="2025-12-31",
                        reason="退職（名簿の反映前）", today=date(2026, 1, 5))
    assert not account(history, "C00001")["active"]


def test_only_admins_import_or_change_statuses(db, make_user):
    reviewer = make_user("a-reviewer", "reviewer", "manager")
    with pytest.raises(Forbidden):
        roster.import_staff(db, reviewer, roster_bytes([person("100009")]), managers=MANAGERS)
    with pytest.raises(Forbidden):
        staff.change_status(db, reviewer, reviewer.user_id, status="休職", starts_on="2026-01-01",
                            reason="x")


# --- the staff list ------------------------------------------------------------------------

def test_staff_command_lists_accounts_in_the_json_shape(db, cli, write_roster, make_user):
    make_user("local-admin", "admin", department="kikaku-johoseisaku")
    cli("import-staff", write_roster([
        person("110001", "山田 太郎", position="課長"),
        person("110002", "佐藤 花子", department="kumin-kazei", status="休職", start="2020-01-01")]))
    result = cli("staff", "--department", "kumin", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [
        {"login": "110001", "employee_number": "110001", "name": "山田 太郎",
         "department_code": "kumin-koseki", "roles": ["manager", "staff"], "status": "active",
         "active": True},
        {"login": "110002", "employee_number": "110002", "name": "佐藤 花子",
         "department_code": "kumin-kazei", "roles": ["staff"], "status": "suspended",
         "active": True}]
    everyone = json.loads(cli("staff", "--json").stdout)
    assert {"login": "local-admin", "employee_number": None, "name": "local-admin さん",
            "department_code": "kikaku-johoseisaku", "roles": ["admin"], "status": None,
            "active": True} in everyone
    assert "110001" in cli("staff").output
    assert cli("staff", "--department", "no-such").exit_code == 1
