"""Sign-in slips (print for a 課, use a code once, choose a password) and changing one's
own password, through the real app on a real SQLite file."""

import re
from datetime import datetime, timedelta, timezone

import pytest

from kb import roster, slips, users
from kb.db import DATABASE_FILE, get_db
from kb.exceptions import Forbidden, Invalid
from tests.conftest import PASSWORD, add_user, csrf_token, login, make_app

CODE = re.compile(r'class="slip-code">([A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4})<')
NEW_PASSWORD = "kinmokusei-no-kaori-2026"
HEADER = "職員番号,氏名,氏名カナ,所属,役職,在籍区分"
ROSTER = [  # two people of 戸籍住民課 (one on 育休: still an account) and one elsewhere
    "700001,戸籍 一郎,コセキ イチロウ,kumin-koseki,主事,",
    "700002,戸籍 花子,コセキ ハナコ,kumin-koseki,主任,育児休業",
    "700003,福祉 次郎,フクシ ジロウ,fukushi-kourei,主事,",
]


@pytest.fixture
def roster_people(app):
    """Roster accounts without a password, as the import makes them; their logins."""
    data = ("\r\n".join([HEADER, *ROSTER]) + "\r\n").encode("cp932")
    with app.app_context():
        roster.import_staff(get_db(), users.SYSTEM, data, "roster.csv", managers=frozenset())
    return ["700001", "700002", "700003"]


def department_id(app, code):
    with app.app_context():
        return users.get_department_by_code(get_db(), code)["department_id"]


def print_sheet(client, app, department="kumin-koseki", scope="no_password"):
    dept = department_id(app, department)
    page = client.get(f"/slips?department={dept}")
    if page.status_code != 200:
        return page
    return client.post("/slips/print", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "department_id": dept,
        "scope": scope})


def codes_by_login(html: str) -> dict[str, str]:
    slips_html = html.split('<li class="slip">')[1:]
    found = {}
    for slip in slips_html:
        login_id = re.search(r'class="slip-login">([^<]+)<', slip).group(1)
        found[login_id] = CODE.search(slip).group(1)
    return found


def enter_code(client, login_id, code):
    page = client.get(f"/slip?login={login_id}").get_data(as_text=True)
    return client.post("/slip", data={"csrf_token": csrf_token(page), "login": login_id,
                                      "code": code})


def choose_password(client, login_id, code, password=NEW_PASSWORD, confirm=None):
    page = client.get("/slip").get_data(as_text=True)
    return client.post("/slip", data={
        "csrf_token": csrf_token(page), "login": login_id, "code": code,
        "password": password, "password_confirm": password if confirm is None else confirm})


def audit_rows(app, action):
    with app.app_context():
        return get_db().execute_returning_dicts(
            "SELECT * FROM audit_log WHERE action = ? ORDER BY audit_id", [action])


def slip_rows(app, login_id):
    with app.app_context():
        return get_db().execute_returning_dicts(
            "SELECT s.* FROM sign_in_slips s JOIN users u USING (user_id) WHERE u.login = ?"
            " ORDER BY slip_id", [login_id])


# --- printing ---------------------------------------------------------------------------

def test_admin_prints_one_slip_per_active_person_with_login_code_url_expiry_and_qr(
        client, app, signed_in, roster_people):
    signed_in("admin", department="kikaku-johoseisaku")
    printed_from = datetime.now(timezone(timedelta(hours=9))).date()
    sheet = print_sheet(client, app)
    printed_by = datetime.now(timezone(timedelta(hours=9))).date()
    html = sheet.get_data(as_text=True)
    assert sheet.status_code == 200
    assert sheet.headers["Cache-Control"] == "no-store"
    assert set(codes_by_login(html)) == {"700001", "700002"}  # not 福祉's person
    assert "戸籍 一郎" in html and "区民部 戸籍住民課" in html
    # The address staff reach the app by (KB_PUBLIC_URL), not the printing browser's.
    assert "http://127.0.0.1:5000/slip?login=700001" in html and "localhost" not in html
    assert html.count('<svg viewBox=') == 2 and 'class="slip-qr"' in html
    assert " style=" not in html and "<style" not in html  # the strict CSP holds
    # 14 days after the day the app read while printing: one of these two, should a
    # midnight (JST) fall during the request.
    assert any(f"{d.year}年{d.month}月{d.day}日まで" in html
               for d in {day + timedelta(days=14) for day in (printed_from, printed_by)})
    assert "一度だけ表示されます" in html
    assert "この用紙を印刷する" in html
    printed = audit_rows(app, "slip_print")
    assert len(printed) == 1 and printed[0]["target"] == "kumin-koseki"
    assert '"count": 2' in printed[0]["detail"]


def test_printing_warns_when_the_public_url_is_left_at_its_loopback_default(
        data_dir, roster_people, app):
    def chooser(public_url, host):
        configured = make_app(data_dir, PUBLIC_URL=public_url)
        client, base = configured.test_client(), f"http://{host}"  # the printing browser's
        login_id = f"slip-admin-{len(host)}-{len(public_url)}"
        add_user(configured, login_id, "admin", department="kikaku-johoseisaku")
        token = csrf_token(client.get("/login", base_url=base).get_data(as_text=True))
        client.post("/login", data={"csrf_token": token, "login": login_id, "password": PASSWORD},
                    base_url=base)
        page = client.get(f"/slips?department={department_id(configured, 'kumin-koseki')}",
                          base_url=base)
        assert page.status_code == 200
        return page.get_data(as_text=True)
    warning = "このサーバーのパソコンの中からしか開けません"
    assert warning in chooser("http://127.0.0.1:5000", "kb.ward.local")
    assert warning not in chooser("http://127.0.0.1:5000", "127.0.0.1:5000")
    assert warning not in chooser("http://kb.ward.local", "kb.ward.local")


def test_qr_code_encodes_the_slip_url():
    svg = slips.qr_svg("http://kb.example/slip?login=700001")
    assert svg.startswith("<svg viewBox=") and "style" not in svg


def test_department_manager_prints_for_their_own_department_only(
        client, app, signed_in, roster_people, make_user):
    make_user("koseki-reviewer", "reviewer", department="kumin-koseki")
    signed_in("manager", department="kumin-koseki")
    sheet = print_sheet(client, app)
    assert sheet.status_code == 200
    # A reviewer's slip comes from an admin; the manager's own from nobody.
    assert set(codes_by_login(sheet.get_data(as_text=True))) == {"700001", "700002"}
    chooser = client.get("/slips").get_data(as_text=True)
    assert "管理者が印刷します" in chooser and "区民部 戸籍住民課" in chooser
    other = department_id(app, "fukushi-kourei")
    assert client.get(f"/slips?department={other}").status_code == 403
    token = csrf_token(chooser)
    refused = client.post("/slips/print", data={"csrf_token": token, "department_id": other,
                                                "scope": "all"})
    assert refused.status_code == 403
    assert slip_rows(app, "700003") == []


def test_a_managers_slip_is_void_once_its_person_gets_an_admin_only_role_or_moves(
        client, app, signed_in, roster_people):
    signed_in("manager", department="kumin-koseki")
    codes = codes_by_login(print_sheet(client, app).get_data(as_text=True))
    with app.app_context():
        db = get_db()
        promoted = users.find_roster_user(db, "login", "700001")
        users.update_user(db, users.SYSTEM, promoted.user_id, display_name=promoted.display_name,
                          department_id=promoted.department_id,
                          roles=frozenset({"staff", "reviewer"}), active=True)
        moved = users.find_roster_user(db, "login", "700002")
        users.update_user(db, users.SYSTEM, moved.user_id, display_name=moved.display_name,
                          department_id=users.get_department_by_code(db, "fukushi-kourei")["department_id"],
                          roles=moved.roles, active=True)
    for login_id in ("700001", "700002"):
        # The manager (or whoever holds the paper) cannot take over the reviewer's account,
        # nor one in a 課 the manager has no say over.
        refused = choose_password(app.test_client(), login_id, codes[login_id])
        assert refused.status_code == 422
        assert "使えなくなりました" in refused.get_data(as_text=True)
        assert login(app.test_client(), login_id, NEW_PASSWORD).status_code != 302
    assert [row["detail"] for row in audit_rows(app, "slip_use_failed")] == \
        ['{"reason": "printer_not_allowed"}'] * 2


def test_an_admins_slip_still_works_for_a_privileged_person(client, app, signed_in, roster_people):
    signed_in("admin", department="kikaku-johoseisaku")
    code = codes_by_login(print_sheet(client, app).get_data(as_text=True))["700001"]
    with app.app_context():
        db = get_db()
        person = users.find_roster_user(db, "login", "700001")
        users.update_user(db, users.SYSTEM, person.user_id, display_name=person.display_name,
                          department_id=person.department_id,
                          roles=frozenset({"staff", "reviewer"}), active=True)
    assert choose_password(app.test_client(), "700001", code).status_code == 302


def test_another_departments_manager_and_staff_cannot_print(
        client, app, signed_in, roster_people, make_user):
    signed_in("manager", department="fukushi-kourei")
    assert print_sheet(client, app, "kumin-koseki").status_code == 403
    assert slip_rows(app, "700001") == []
    staff_member = make_user("koseki-staff", "staff", department="kumin-koseki")
    with app.app_context(), pytest.raises(Forbidden):
        slips.print_slips(get_db(), staff_member, department_id(app, "kumin-koseki"),
                          base_url="http://x/slip")


def test_staff_get_403_on_the_printing_pages(client, app, signed_in):
    signed_in("staff")
    assert client.get("/slips").status_code == 403
    assert "ログイン用紙" not in client.get("/").get_data(as_text=True)


def test_unknown_department_is_not_found(client, app, signed_in):
    signed_in("admin", department="kikaku-johoseisaku")
    assert client.get("/slips?department=99999").status_code == 404


def test_a_department_where_everyone_has_a_password_prints_an_empty_state(
        client, app, signed_in):
    signed_in("admin", department="kikaku-johoseisaku")
    sheet = print_sheet(client, app, "kumin-koseki")
    html = sheet.get_data(as_text=True)
    assert sheet.status_code == 200 and "印刷する人がいませんでした" in html
    assert "<svg" not in html


# --- using a code ------------------------------------------------------------------------

def test_a_new_person_uses_the_code_chooses_a_password_and_signs_in_with_it(
        client, app, signed_in, roster_people):
    signed_in("admin", department="kikaku-johoseisaku")
    code = codes_by_login(print_sheet(client, app).get_data(as_text=True))["700001"]
    person = app.test_client()
    form = person.get("/slip?login=700001")
    assert form.status_code == 200 and 'value="700001"' in form.get_data(as_text=True)
    step = enter_code(person, "700001", code.lower().replace("-", " "))  # as typed on a phone
    assert step.status_code == 200
    assert "戸籍 一郎" in step.get_data(as_text=True)
    assert "パスワードを設定する" in step.get_data(as_text=True)
    done = choose_password(person, "700001", code)
    assert done.status_code == 302 and done.headers["Location"] == "/"
    assert person.get("/").status_code == 200  # signed in
    used = slip_rows(app, "700001")
    assert used[-1]["used_at"] and not used[-1]["voided_at"]
    assert [row["target"] for row in audit_rows(app, "slip_use")] == ["700001"]
    fresh = app.test_client()
    assert login(fresh, "700001", NEW_PASSWORD).status_code == 302


def test_a_code_works_once(client, app, signed_in, roster_people):
    signed_in("admin", department="kikaku-johoseisaku")
    code = codes_by_login(print_sheet(client, app).get_data(as_text=True))["700002"]
    assert choose_password(app.test_client(), "700002", code).status_code == 302
    again = enter_code(app.test_client(), "700002", code)
    assert again.status_code == 422
    assert "このコードは使用済みです" in again.get_data(as_text=True)
    assert choose_password(app.test_client(), "700002", code, "another-long-phrase-7").status_code == 422
    assert login(app.test_client(), "700002", "another-long-phrase-7").status_code != 302
    assert [row["detail"] for row in audit_rows(app, "slip_use_failed")] == \
        ['{"reason": "used"}', '{"reason": "used"}']


def test_an_expired_code_is_refused(client, app, signed_in, roster_people):
    signed_in("admin", department="kikaku-johoseisaku")
    code = codes_by_login(print_sheet(client, app).get_data(as_text=True))["700001"]
    with app.app_context():
        db = get_db()
        later = datetime.now(timezone.utc) + timedelta(days=15)
        with pytest.raises(Invalid) as refused:
            slips.use_code(db, "700001", code, password=NEW_PASSWORD, confirm=NEW_PASSWORD,
                           now=later)
        assert "有効期限" in refused.value.errors["code"][0]
        # Still valid on day 14: the code lasts to the end of its last day.
        assert slips.check_code(db, "700001", code,
                                now=datetime.now(timezone.utc) + timedelta(days=13)).login == "700001"
        db.execute("UPDATE sign_in_slips SET expires_at = '2020-01-01T00:00:00+00:00'")
        db.conn.commit()
    page = enter_code(app.test_client(), "700001", code)
    assert page.status_code == 422
    assert "有効期限（2020年1月1日）を過ぎています" in page.get_data(as_text=True)
    assert '{"reason": "expired"}' in [row["detail"] for row in audit_rows(app, "slip_use_failed")]
    assert not slip_rows(app, "700001")[0]["used_at"]


def test_reprinting_voids_the_older_unused_codes(client, app, signed_in, roster_people):
    signed_in("admin", department="kikaku-johoseisaku")
    first = codes_by_login(print_sheet(client, app).get_data(as_text=True))
    second_sheet = print_sheet(client, app).get_data(as_text=True)
    second = codes_by_login(second_sheet)
    assert "2人の以前の未使用のコードは無効にしました" in second_sheet
    old = enter_code(app.test_client(), "700001", first["700001"])
    assert old.status_code == 422
    assert "新しい用紙が印刷されたか" in old.get_data(as_text=True)
    assert choose_password(app.test_client(), "700001", second["700001"]).status_code == 302
    voided = audit_rows(app, "slip_void")
    assert len(voided) == 1 and '"700001"' in voided[0]["detail"] and '"700002"' in voided[0]["detail"]
    assert [bool(row["voided_at"]) for row in slip_rows(app, "700002")] == [True, False]


def test_a_wrong_code_or_unknown_login_gets_one_message_and_is_audited_without_the_code(
        client, app, signed_in, roster_people):
    signed_in("admin", department="kikaku-johoseisaku")
    code = codes_by_login(print_sheet(client, app).get_data(as_text=True))["700001"]
    for login_id, typed in (("700001", "AAAA-BBBB-CCCC"), ("nobody", code), ("700002", code)):
        page = enter_code(app.test_client(), login_id, typed)
        assert page.status_code == 422
        assert "ログインIDまたはコードが正しくありません" in page.get_data(as_text=True)
    failed = audit_rows(app, "slip_use_failed")
    assert [(row["target"], row["detail"]) for row in failed] == [
        ("700001", '{"reason": "wrong_code"}'), ("nobody", '{"reason": "unknown_login"}'),
        ("700002", '{"reason": "wrong_code"}')]
    assert not slip_rows(app, "700001")[0]["used_at"]


def test_codes_are_stored_only_as_hashes(client, app, signed_in, roster_people, data_dir):
    signed_in("admin", department="kikaku-johoseisaku")
    codes = codes_by_login(print_sheet(client, app).get_data(as_text=True))
    enter_code(app.test_client(), "700001", "WRONG-CODE-TYPED")
    choose_password(app.test_client(), "700002", codes["700002"])
    stored = b"".join(path.read_bytes() for path in data_dir.glob(DATABASE_FILE + "*"))
    for code in codes.values():
        for form in (code, code.replace("-", "")):
            assert form.encode() not in stored
    assert len(slip_rows(app, "700001")[0]["code_hash"]) == 64


@pytest.mark.parametrize("password, confirm, field, message", [
    ("short-pw", None, "password", "パスワードは10文字以上にしてください。"),
    ("my-700001-password", None, "password", "ログインIDを含むパスワードは使えません。"),
    ("password1234", None, "password", "よく使われているパスワード"),
    ("qwertyuiop", None, "password", "よく使われているパスワード"),
    (NEW_PASSWORD, "kinmokusei-no-kaori-2025", "password_confirm", "同じパスワードをもう一度入力してください。"),
    ("", None, "password", "新しいパスワードを入力してください。"),
    (" " * 12, None, "password", "空白や見えない文字を除いて10文字以上"),
    ("\u3000" * 10 + "\t", None, "password", "空白や見えない文字を除いて10文字以上"),
    ("abc\u200bdef\u200bgh\u200b", None, "password", "空白や見えない文字を除いて10文字以上"),
    ("xxxxxxxxxxxx", None, "password", "同じ文字の繰り返し"),
    ("abababababab", None, "password", "同じ文字の繰り返し"),
    ("my-7000\u200b01-words", None, "password", "ログインIDを含むパスワードは使えません。"),
    ("pass word 1234", None, "password", "よく使われているパスワード"),
])
def test_each_password_rule_is_refused_beside_its_field_and_keeps_the_code(
        client, app, signed_in, roster_people, password, confirm, field, message):
    signed_in("admin", department="kikaku-johoseisaku")
    code = codes_by_login(print_sheet(client, app).get_data(as_text=True))["700001"]
    person = app.test_client()
    page = choose_password(person, "700001", code, password, confirm)
    html = page.get_data(as_text=True)
    assert page.status_code == 422
    errors = re.search(rf'<ul class="field-errors" id="{field}-errors">(.*?)</ul>', html, re.S)
    assert errors and message in errors.group(1)
    assert not slip_rows(app, "700001")[0]["used_at"]
    assert audit_rows(app, "slip_use_failed") == []  # not a guess at the code
    assert choose_password(person, "700001", code).status_code == 302


def test_wrong_codes_are_rate_limited_but_password_mistakes_are_not(data_dir, roster_people, app):
    limited = make_app(data_dir, LOGIN_RATE_LIMIT="3 per minute")
    with limited.app_context():
        db = get_db()
        admin = users.create_user(db, users.SYSTEM, login="slip-admin", display_name="管理",
                                  department_id=department_id(limited, "kikaku-johoseisaku"),
                                  roles=["admin"], password=PASSWORD)
        code = slips.print_slips(db, admin, department_id(limited, "kumin-koseki"),
                                 base_url="http://x/slip")["slips"][0]
    person = limited.test_client()
    for _ in range(4):  # four password mistakes: none counts
        assert choose_password(person, code["login"], code["code"], "short").status_code == 422
    for _ in range(3):
        assert enter_code(person, code["login"], "AAAA-BBBB-CCCC").status_code == 422
    assert enter_code(person, code["login"], code["code"]).status_code == 429


def test_using_a_code_ends_the_persons_other_sessions(client, app, signed_in, roster_people):
    signed_in("admin", department="kikaku-johoseisaku")
    forgetful = app.test_client()
    with app.app_context():
        db = get_db()
        db.execute("UPDATE users SET password_hash = ? WHERE login = '700001'",
                   [users.generate_password_hash(PASSWORD)])
        db.conn.commit()
    assert login(forgetful, "700001").status_code == 302
    code = codes_by_login(print_sheet(client, app, scope="all").get_data(as_text=True))["700001"]
    assert choose_password(app.test_client(), "700001", code).status_code == 302
    assert forgetful.get("/").status_code == 302  # back to the sign-in page


def test_the_sign_in_page_links_to_the_slip_page(client):
    assert "/slip" in client.get("/login").get_data(as_text=True)
    assert client.get("/slip").status_code == 200


# --- changing one's own password ---------------------------------------------------------

def change(client, current, password, confirm=None):
    page = client.get("/account/password").get_data(as_text=True)
    return client.post("/account/password", data={
        "csrf_token": csrf_token(page), "current_password": current, "password": password,
        "password_confirm": password if confirm is None else confirm})


def test_changing_ones_own_password_keeps_this_session_and_ends_the_others(
        client, app, signed_in):
    signed_in("staff", login_id="kawase")
    other = app.test_client()
    assert login(other, "kawase").status_code == 302
    assert "パスワード変更" in client.get("/").get_data(as_text=True)
    assert change(client, PASSWORD, NEW_PASSWORD).status_code == 302
    assert client.get("/").status_code == 200
    assert other.get("/").status_code == 302
    assert login(app.test_client(), "kawase", NEW_PASSWORD).status_code == 302
    assert [row["target"] for row in audit_rows(app, "password_change")] == ["kawase"]


@pytest.mark.parametrize("current, password, field, message", [
    ("not-my-password", NEW_PASSWORD, "current_password", "現在のパスワードが正しくありません。"),
    (PASSWORD, "kawase-secret-99", "password", "ログインIDを含むパスワードは使えません。"),
    (PASSWORD, "iloveyou123!", "password", "よく使われているパスワード"),
])
def test_a_refused_password_change_says_why_and_changes_nothing(
        client, app, signed_in, current, password, field, message):
    signed_in("staff", login_id="kawase")
    page = change(client, current, password)
    assert page.status_code == 422
    errors = re.search(rf'id="{field}-errors">(.*?)</ul>', page.get_data(as_text=True), re.S)
    assert errors and message in errors.group(1)
    assert login(app.test_client(), "kawase", PASSWORD).status_code == 302
    assert audit_rows(app, "password_change") == []


def test_a_manager_cannot_print_a_slip_for_a_fellow_manager_of_the_same_department(
        client, app, signed_in, make_user, roster_people):
    make_user("kacho2", "manager")
    signed_in("manager")
    html = print_sheet(client, app, scope="all").get_data(as_text=True)
    printed = codes_by_login(html)
    assert "kacho2" not in printed and {"700001", "700002"} <= set(printed)


def test_a_slip_printed_before_a_deactivation_is_void_after_reactivation(
        client, app, signed_in, roster_people):
    signed_in("admin", department="kikaku-johoseisaku")
    code = codes_by_login(print_sheet(client, app).get_data(as_text=True))["700001"]
    with app.app_context():
        db = get_db()
        person = next(u for u in users.list_users(db, users.SYSTEM) if u.login == "700001")
        for active in (False, True):  # 退職, then hired again
            users.update_user(db, users.SYSTEM, person.user_id, display_name=person.display_name,
                              department_id=person.department_id, roles=person.roles,
                              active=active)
    refused = enter_code(app.test_client(), "700001", code)
    assert refused.status_code == 422
    assert "アカウントがいったん無効になった" in refused.get_data(as_text=True)
