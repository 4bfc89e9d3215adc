"""Version-checked writes: two browsers open the same page, the first saves, the second's
older form is refused with 409, keeps what it typed and explains why, and the first
save survives. One test per form that overwrites a record (the report form's own test
is in test_reports.py, the external case edit's in test_external.py)."""

import re

import pytest

from kb import workflow, workshops
from kb.db import get_db
from tests.conftest import csrf_token, login
from tests.reporting import file_report, form_version, incident_form

STALE = "この画面を開いた後に"


@pytest.fixture
def people(make_user):
    return {
        "reporter": make_user("reporter", "staff"),
        "manager": make_user("manager", "manager"),
        "reviewer": make_user("reviewer", "reviewer", department="soumu-gyousei-joho"),
        "reviewer2": make_user("reviewer2", "reviewer", department="soumu-gyousei-joho"),
        "trainer": make_user("trainer", "trainer", department="soumu-jinji"),
        "admin": make_user("admin", "admin", department="kikaku-johoseisaku"),
        "admin2": make_user("admin2", "admin", department="kikaku-johoseisaku"),
    }


def browser(app, login_id):
    client = app.test_client()
    assert login(client, login_id).status_code == 302
    return client


def submitted_incident(app, people, **overrides):
    """An incident the reporter filed and submitted (personal data acknowledged)."""
    reporter = browser(app, "reporter")
    case_id = file_report(reporter, "incident", incident_form(**overrides))
    with app.app_context():
        workflow.submit_report(get_db(), people["reporter"], case_id, pii_acknowledged=True)
    return case_id


def open_page(client, url, action):
    """What a browser holds after opening ``url``: its CSRF token and the version of the
    form posting to ``action`` (None: the form posting to the page itself)."""
    html = client.get(url).get_data(as_text=True)
    return {"csrf_token": csrf_token(html), "version": form_version(html, action)}


def one(app, sql, params):
    with app.app_context():
        return get_db().execute(sql, params).fetchone()[0]


def test_an_older_statutory_form_does_not_wipe_the_first_reviewers_dates(app, people):
    case_id = submitted_incident(app, people, affected_count="300")
    action = f"/reports/{case_id}/statutory"
    first, second = browser(app, "reviewer"), browser(app, "reviewer2")
    first_page = open_page(first, f"/cases/{case_id}", action)
    second_page = open_page(second, f"/cases/{case_id}", action)
    saved = first.post(action, data={**first_page, "prelim_reported_on": "2026-10-06",
                                     "final_reported_on": "", "disclosure": "", "disclosure_reason": ""})
    assert saved.status_code == 302
    stale = second.post(action, data={**second_page, "prelim_reported_on": "",
                                      "final_reported_on": "", "disclosure": "none",
                                      "disclosure_reason": "二重に届いた苦情のため判断を保留"})
    assert stale.status_code == 409
    html = stale.get_data(as_text=True)
    assert STALE in html and "二重に届いた苦情のため判断を保留" in html
    assert '<option value="none" selected>' in html
    assert one(app, "SELECT prelim_reported_on FROM cases WHERE case_id = ?", [case_id]) == "2026-10-06"
    assert one(app, "SELECT disclosure FROM cases WHERE case_id = ?", [case_id]) is None


def test_a_statutory_form_without_a_version_is_refused_as_stale(app, people):
    case_id = submitted_incident(app, people)
    reviewer = browser(app, "reviewer")
    token = csrf_token(reviewer.get(f"/cases/{case_id}").get_data(as_text=True))
    response = reviewer.post(f"/reports/{case_id}/statutory", data={
        "csrf_token": token, "prelim_reported_on": "2026-10-06", "final_reported_on": "",
        "disclosure": "", "disclosure_reason": ""})
    assert response.status_code == 409
    assert one(app, "SELECT prelim_reported_on FROM cases WHERE case_id = ?", [case_id]) is None


def test_an_older_personal_data_panel_does_not_mask_text_that_changed(app, people):
    case_id = submitted_incident(
        app, people, summary="佐藤花子様（090-1234-5678）宛ての通知を別人に送付した。")
    action = f"/reports/{case_id}/pii"
    first, second = browser(app, "reviewer"), browser(app, "reviewer2")
    first_page = open_page(first, f"/cases/{case_id}", action)
    second_page = open_page(second, f"/cases/{case_id}", action)
    masked = first.post(action, data={**first_page, "field": "summary", "start": "6", "end": "19",
                                      "action": "mask"})
    assert masked.status_code == 302
    # The second reviewer's offsets were of the text before the mask.
    stale = second.post(action, data={**second_page, "field": "summary", "start": "0",
                                      "end": "5", "action": "mask"})
    assert stale.status_code == 409 and STALE in stale.get_data(as_text=True)
    confirm = second.post(action, data={**second_page, "field": "summary", "text": "佐藤花子様",
                                        "action": "confirm"})
    assert confirm.status_code == 409
    assert one(app, "SELECT summary FROM cases WHERE case_id = ?", [case_id]) \
        == "佐藤花子様（＊＊＊）宛ての通知を別人に送付した。"
    assert one(app, "SELECT count(*) FROM pii_confirmations WHERE case_id = ?", [case_id]) == 0


def test_an_older_progress_form_does_not_undo_a_newer_progress(app, people):
    case_id = submitted_incident(app, people)
    countermeasure_id = one(app, "SELECT countermeasure_id FROM countermeasures WHERE case_id = ?",
                            [case_id])
    action = f"/reports/countermeasures/{countermeasure_id}"
    manager, reviewer = browser(app, "manager"), browser(app, "reviewer")
    manager_page = open_page(manager, f"/cases/{case_id}", action)
    reviewer_page = open_page(reviewer, f"/cases/{case_id}", action)
    assert manager.post(action, data={**manager_page, "status": "done",
                                      "case_id": case_id}).status_code == 302
    stale = reviewer.post(action, data={**reviewer_page, "status": "in_progress",
                                        "case_id": case_id})
    assert stale.status_code == 409
    html = stale.get_data(as_text=True)
    assert "この対策を更新したため" in html
    assert re.search(r'<option value="in_progress" selected>', html)  # the reviewer's choice kept
    assert one(app, "SELECT status FROM countermeasures WHERE countermeasure_id = ?",
               [countermeasure_id]) == "done"


def test_a_reviewers_mask_makes_an_older_progress_form_stale(app, people):
    # Masking rewrites the countermeasures (their text may hold the finding).
    case_id = submitted_incident(app, people, **{
        "countermeasures-0-text": "090-1234-5678 への連絡手順を見直す。"})
    countermeasure_id = one(app, "SELECT countermeasure_id FROM countermeasures WHERE case_id = ?",
                            [case_id])
    manager = browser(app, "manager")
    stale_page = open_page(manager, f"/cases/{case_id}", f"/reports/countermeasures/{countermeasure_id}")
    reviewer = browser(app, "reviewer")
    pii = open_page(reviewer, f"/cases/{case_id}", f"/reports/{case_id}/pii")
    assert reviewer.post(f"/reports/{case_id}/pii", data={
        **pii, "field": "countermeasures-0-text", "start": "0", "end": "13",
        "action": "mask"}).status_code == 302
    response = manager.post(f"/reports/countermeasures/{countermeasure_id}",
                            data={**stale_page, "status": "done", "case_id": case_id})
    assert response.status_code == 409


@pytest.mark.parametrize("target", ["countermeasure", "case"])
def test_an_older_checklist_link_form_does_not_undo_newer_links(app, people, target):
    with app.app_context():
        countermeasure_id, case_id = get_db().execute(
            "SELECT m.countermeasure_id, m.case_id FROM countermeasures m JOIN cases c USING (case_id)"
            " WHERE c.origin = 'external' AND c.status = 'published' ORDER BY m.countermeasure_id"
            " LIMIT 1").fetchone()
    action = (f"/checklist/links/countermeasure/{countermeasure_id}" if target == "countermeasure"
              else f"/checklist/links/case/{case_id}")
    first, second = browser(app, "reviewer"), browser(app, "reviewer2")
    first_page = open_page(first, f"/cases/{case_id}", action)
    second_page = open_page(second, f"/cases/{case_id}", action)
    assert first.post(action, data={**first_page, "case_id": case_id,
                                    "item_codes": "3-3 3-4"}).status_code == 302
    stale = second.post(action, data={**second_page, "case_id": case_id, "item_codes": "1-1"})
    assert stale.status_code == 409
    html = stale.get_data(as_text=True)
    assert "この結び付けを更新したため" in html and 'value="1-1"' in html
    table, key, row_id = (("countermeasure_checklist_items", "countermeasure_id", countermeasure_id)
                          if target == "countermeasure" else ("case_checklist_items", "case_id", case_id))
    with app.app_context():
        codes = [r[0] for r in get_db().execute(
            f"SELECT item_code FROM {table} WHERE {key} = ? ORDER BY item_code", [row_id])]
    assert codes == ["3-3", "3-4"]


# --- workshops ------------------------------------------------------------------------------

@pytest.fixture
def workshop(app, people):
    """The trainer's workshop with two published external cases: (workshop id, case ids)."""
    with app.app_context():
        db = get_db()
        case_ids = [r[0] for r in db.execute(
            "SELECT case_id FROM cases WHERE origin = 'external' AND status = 'published'"
            " ORDER BY case_id LIMIT 2")]
        workshop_id = workshops.create_workshop(db, people["trainer"], title="FAX研修")
        for case_id in case_ids:
            workshops.add_case(db, people["trainer"], workshop_id, case_id)
    return workshop_id, case_ids


def two_tabs(app, url, action):
    """The trainer's two windows on the same workshop page."""
    tabs = [browser(app, "trainer"), browser(app, "trainer")]
    return [(tab, open_page(tab, url, action)) for tab in tabs]


def test_an_older_workshop_settings_form_does_not_undo_newer_settings(app, people, workshop):
    workshop_id, _ = workshop
    url = f"/workshops/{workshop_id}"
    (first, first_page), (second, second_page) = two_tabs(app, url, None)
    form = {"held_on": "", "audience_department_id": "", "questions": "自分の課で起こりうるか"}
    assert first.post(url, data={**first_page, **form, "title": "FAX誤送信を防ぐ",
                                 "shared": "1"}).status_code == 302
    stale = second.post(url, data={**second_page, **form, "title": "FAX研修（窓口向け）"})
    assert stale.status_code == 409
    html = stale.get_data(as_text=True)
    assert "この研修が更新されたため" in html and 'value="FAX研修（窓口向け）"' in html
    assert one(app, "SELECT title FROM workshops WHERE workshop_id = ?", [workshop_id]) == "FAX誤送信を防ぐ"
    assert one(app, "SELECT shared FROM workshops WHERE workshop_id = ?", [workshop_id]) == 1


def test_an_older_note_form_does_not_overwrite_a_newer_note(app, people, workshop):
    workshop_id, (first_case, _) = workshop
    action = f"/workshops/{workshop_id}/cases/{first_case}"
    (first, first_page), (second, second_page) = two_tabs(app, f"/workshops/{workshop_id}", action)
    assert first.post(action, data={**first_page, "action": "note",
                                    "note": "まず番号の確認手順を聞く"}).status_code == 302
    stale = second.post(action, data={**second_page, "action": "note", "note": "古い画面のメモ"})
    assert stale.status_code == 409
    html = stale.get_data(as_text=True)
    assert "この研修が更新されたため" in html and "古い画面のメモ</textarea>" in html
    assert one(app, "SELECT note FROM workshop_cases WHERE workshop_id = ? AND case_id = ?",
               [workshop_id, first_case]) == "まず番号の確認手順を聞く"


@pytest.mark.parametrize("action", ["down", "remove"])
def test_an_older_order_or_remove_button_does_not_act_on_a_changed_workshop(app, people, workshop, action):
    workshop_id, (first_case, second_case) = workshop
    url = f"/workshops/{workshop_id}/cases/{first_case}"
    (first, first_page), (second, second_page) = two_tabs(app, f"/workshops/{workshop_id}", url)
    # The first window moves the first case down; the second, opened before, presses its own button.
    assert first.post(url, data={**first_page, "action": "down", "note": ""}).status_code == 302
    stale = second.post(url, data={**second_page, "action": action, "note": ""})
    assert stale.status_code == 409 and "この研修が更新されたため" in stale.get_data(as_text=True)
    with app.app_context():
        order = [r[0] for r in get_db().execute(
            "SELECT case_id FROM workshop_cases WHERE workshop_id = ? ORDER BY position", [workshop_id])]
    assert order == [second_case, first_case]


def test_adding_a_case_makes_an_open_workshop_page_stale(app, people, workshop):
    workshop_id, _ = workshop
    url = f"/workshops/{workshop_id}"
    tab = browser(app, "trainer")
    page = open_page(tab, url, None)
    with app.app_context():
        db = get_db()
        third = db.execute("SELECT case_id FROM cases WHERE origin = 'external' AND status = 'published'"
                           " ORDER BY case_id LIMIT 1 OFFSET 2").fetchone()[0]
        workshops.add_case(db, people["trainer"], workshop_id, third)
    response = tab.post(url, data={**page, "title": "改題", "held_on": "",
                                   "audience_department_id": "", "questions": ""})
    assert response.status_code == 409
    assert one(app, "SELECT title FROM workshops WHERE workshop_id = ?", [workshop_id]) == "FAX研修"


# --- accounts -----------------------------------------------------------------------------

def test_an_older_account_form_does_not_undo_another_admins_change(app, people):
    target = people["reporter"]
    url = f"/admin/users/{target.user_id}"
    first, second = browser(app, "admin"), browser(app, "admin2")
    first_page, second_page = open_page(first, url, None), open_page(second, url, None)
    with app.app_context():
        other_department = get_db().execute(
            "SELECT department_id FROM departments WHERE code = 'fukushi-kourei'").fetchone()[0]
    assert first.post(url, data={**first_page, "display_name": target.display_name,
                                 "department_id": str(target.department_id),
                                 "roles": ["staff", "manager"], "active": "y"}).status_code == 302
    stale = second.post(url, data={**second_page, "display_name": "山田 花子",
                                   "department_id": str(other_department), "roles": ["staff"],
                                   "active": "y"})
    assert stale.status_code == 409
    html = stale.get_data(as_text=True)
    assert "この利用者を更新したため" in html and 'value="山田 花子"' in html
    with app.app_context():
        db = get_db()
        roles = sorted(r[0] for r in db.execute("SELECT role FROM user_roles WHERE user_id = ?",
                                                 [target.user_id]))
        name, department = db.execute("SELECT display_name, department_id FROM users WHERE user_id = ?",
                                      [target.user_id]).fetchone()
    assert roles == ["manager", "staff"]
    assert (name, department) == (target.display_name, target.department_id)


def test_an_account_form_without_a_version_is_refused_as_stale(app, people):
    """WTForms fills a field the request lacks from the form's own data — here the current
    version — so a POST without one used to pass as fresh and overwrite unchecked."""
    target = people["reporter"]
    url = f"/admin/users/{target.user_id}"
    admin = browser(app, "admin")
    token = csrf_token(admin.get(url).get_data(as_text=True))
    response = admin.post(url, data={"csrf_token": token, "display_name": "上書き",
                                     "department_id": str(target.department_id),
                                     "roles": ["staff"], "active": "y"})
    assert response.status_code == 409
    with app.app_context():
        name = get_db().execute("SELECT display_name FROM users WHERE user_id = ?",
                                [target.user_id]).fetchone()[0]
    assert name == target.display_name


def workflow_form(client, case_id):
    """The CSRF token and version of the case page's workflow form (承認 / 差し戻し / 公開)."""
    html = client.get(f"/cases/{case_id}").get_data(as_text=True)
    form = re.search(r'<form[^>]*>((?:(?!</form>).)*?id="workflow-comment".*?)</form>', html, re.S)
    assert form, "no workflow form on the page"
    return {"csrf_token": csrf_token(html),
            "version": re.search(r'name="version" value="(\d+)"', form.group(1)).group(1)}


def test_an_approve_button_on_an_older_page_does_not_approve_a_rewritten_report(app, people):
    case_id = submitted_incident(app, people)
    manager = browser(app, "manager")
    stale = workflow_form(manager, case_id)
    # Meanwhile the report goes back to its reporter, is rewritten and submitted again.
    with app.app_context():
        db = get_db()
        workflow.return_report(db, people["manager"], case_id, comment="原因をもう少し詳しく")
        db["cases"].update(case_id, {"summary": "書き直した概要"})
        workflow.submit_report(db, people["reporter"], case_id, pii_acknowledged=True)
    response = manager.post(f"/reports/{case_id}/approve", data={**stale, "comment": "承認します"})
    assert response.status_code == 409
    page = response.get_data(as_text=True)
    assert STALE in page and "承認します" in page
    assert one(app, "SELECT status FROM cases WHERE case_id = ?", [case_id]) == "submitted"
    fresh = workflow_form(manager, case_id)
    assert manager.post(f"/reports/{case_id}/approve", data=fresh).status_code == 302
    assert one(app, "SELECT status FROM cases WHERE case_id = ?", [case_id]) == "approved"


def test_a_workflow_button_without_a_version_is_refused_as_stale(app, people):
    case_id = submitted_incident(app, people)
    manager = browser(app, "manager")
    token = workflow_form(manager, case_id)["csrf_token"]
    response = manager.post(f"/reports/{case_id}/approve", data={"csrf_token": token})
    assert response.status_code == 409
    assert one(app, "SELECT status FROM cases WHERE case_id = ?", [case_id]) == "submitted"


def test_two_steps_racing_on_one_report_cannot_both_land(app, people):
    """The step is a compare-and-set on the status and version that were checked."""
    case_id = submitted_incident(app, people)
    with app.app_context():
        db = get_db()
        case = next(db.query("SELECT * FROM cases WHERE case_id = ?", [case_id]))
        workflow.approve_report(db, people["manager"], case_id)
        # A return that had read the case before the approval landed is refused.
        with pytest.raises(workflow.Conflict):
            workflow._transition(db, people["manager"], case, "draft", "return", comment="理由")
        assert db.execute("SELECT status FROM cases WHERE case_id = ?",
                          [case_id]).fetchone()[0] == "approved"
