"""自己点検 campaigns: authoring, eligibility, taking one, the figures (issue #13)."""

import csv
import io
import json
import re
import threading
from datetime import date, timedelta

import pytest

from kb import campaigns, dates, participation, roster, selfcheck, staff, users
from kb.db import database_path, get_db, open_db, transaction
from kb.exceptions import Conflict, Forbidden, Invalid, NotFound
from tests.conftest import csrf_token, login, post_form

TODAY = dates.office_today()
OPENS = f"{TODAY - timedelta(days=1)}T09:00"
CLOSES = f"{TODAY + timedelta(days=14)}T17:00"
HEADER = "職員番号,氏名,氏名カナ,所属,役職,在籍区分,区分開始日,区分終了日,メールアドレス"
LONG_AGO = (TODAY - timedelta(days=60)).isoformat()


def department_id(db, code):
    return users.get_department_by_code(db, code)["department_id"]


def load_roster(db, rows):
    """Import roster people through the real importer: (number, department, status, email)."""
    lines = [HEADER] + [f"{n},職員 {n},ショクイン,{dept},主事,{status},{LONG_AGO if status else ''},,{email}"
                        for n, dept, status, email in rows]
    roster.import_staff(db, users.SYSTEM, ("\r\n".join(lines) + "\r\n").encode("utf-8"),
                        managers=frozenset({"課長"}), today=TODAY - timedelta(days=90))
    return {n: db.execute("SELECT user_id FROM users WHERE employee_number = ?", [n]).fetchone()[0]
            for n, *_ in rows}


def make_campaign(db, reviewer, *, departments=("kumin-koseki",), per_person="", pass_mark="1",
                  retakes="until_passed", opens=OPENS, closes=CLOSES, sections=("3",)):
    campaign_id = campaigns.create_campaign(
        db, reviewer, title="令和8年度 自己点検", opens_at=opens, closes_at=closes,
        whole_office=not departments, department_ids=[department_id(db, d) for d in departments],
        questions_per_person=per_person, pass_mark=pass_mark, retakes=retakes)
    if sections:
        campaigns.generate_questions(db, reviewer, campaign_id, section_codes=sections,
                                     version=version(db, campaign_id))
    return campaign_id


def version(db, campaign_id):
    return participation.campaign_row(db, campaign_id)["version"]


def open_(db, reviewer, campaign_id):
    return campaigns.open_campaign(db, reviewer, campaign_id, version=version(db, campaign_id))


@pytest.fixture
def reviewer(make_user):
    return make_user("rev", "reviewer", department="soumu-gyousei-joho")


def finish(db, user, campaign_id, *, right=True):
    """Answer every question of a new attempt (all right, or all wrong)."""
    attempt_id = selfcheck.start_attempt(db, user, campaign_id)
    attempt = selfcheck._attempt(db, user, campaign_id, attempt_id)
    for position, question_id in enumerate(attempt["question_ids"], start=1):
        correct = db.execute("SELECT answer FROM campaign_questions WHERE question_id = ?",
                             [question_id]).fetchone()[0]
        selfcheck.answer_question(db, user, campaign_id, attempt_id, position,
                                  correct if right else 1 - correct)
    return attempt_id


# --- the bad-input rules of the issue -----------------------------------------------------------

def test_campaign_without_questions_cannot_open(db, reviewer):
    campaign_id = make_campaign(db, reviewer, sections=())
    with pytest.raises(Invalid) as refused:
        open_(db, reviewer, campaign_id)
    assert "問題が1問もない" in refused.value.errors["open"][0]
    assert participation.campaign_row(db, campaign_id)["status"] == "draft"
    assert db.execute("SELECT count(*) FROM campaign_eligibility").fetchone()[0] == 0


def test_closing_before_opening_is_refused(db, reviewer):
    campaign_id = make_campaign(db, reviewer)
    with pytest.raises(Invalid) as refused:
        campaigns.close_campaign(db, reviewer, campaign_id)
    assert "まだ開始していない" in refused.value.errors["close"][0]
    assert participation.campaign_row(db, campaign_id)["status"] == "draft"


def test_close_button_on_a_draft_shows_the_message(client, app, signed_in):
    reviewer = signed_in("reviewer", department="soumu-gyousei-joho")
    with app.app_context():
        campaign_id = make_campaign(get_db(), reviewer)
    token = csrf_token(client.get(f"/campaigns/{campaign_id}").get_data(as_text=True))
    response = client.post(f"/campaigns/{campaign_id}/close", data={"csrf_token": token})
    assert response.status_code == 422
    assert "まだ開始していない自己点検は締め切れません" in response.get_data(as_text=True)


def test_person_outside_the_target_gets_404_on_its_pages(app, client, make_user, reviewer):
    inside = make_user("inside", department="kumin-koseki")
    make_user("outside", department="soumu-jinji")
    with app.app_context():
        db = get_db()
        campaign_id = make_campaign(db, reviewer)
        open_(db, reviewer, campaign_id)
        attempt_id = selfcheck.start_attempt(db, inside, campaign_id)
    login(client, "outside")
    assert client.get(f"/selfcheck/{campaign_id}").status_code == 404
    assert client.get(f"/selfcheck/{campaign_id}/attempts/{attempt_id}/1").status_code == 404
    token = csrf_token(client.get("/").get_data(as_text=True))
    assert client.post(f"/selfcheck/{campaign_id}/start",
                       data={"csrf_token": token}).status_code == 404
    assert client.post(f"/selfcheck/{campaign_id}/attempts/{attempt_id}/1",
                       data={"csrf_token": token, "answer": "1"}).status_code == 404
    with app.app_context():
        assert get_db().execute("SELECT count(*) FROM campaign_answers").fetchone()[0] == 0


def test_a_draft_campaign_is_not_found_by_staff(app, client, signed_in, reviewer):
    signed_in("staff")
    with app.app_context():
        campaign_id = make_campaign(get_db(), reviewer)
    assert client.get(f"/selfcheck/{campaign_id}").status_code == 404


def test_exclusion_without_a_reason_is_refused(db, reviewer, make_user):
    manager = make_user("boss", "manager", department="kumin-koseki")
    person = make_user("taro", department="kumin-koseki")
    campaign_id = make_campaign(db, reviewer)
    for reason in ("", "   "):
        with pytest.raises(Invalid) as refused:
            participation.exclude_person(db, manager, campaign_id, person.user_id, reason)
        assert "理由" in refused.value.errors["reason"][0]
    assert db.execute("SELECT count(*) FROM campaign_exclusions").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM audit_log WHERE action = 'campaign_exclude'").fetchone()[0] == 0


def test_a_manager_cannot_exclude_someone_of_another_department(db, reviewer, make_user):
    manager = make_user("boss", "manager", department="soumu-jinji")
    person = make_user("taro", department="kumin-koseki")
    campaign_id = make_campaign(db, reviewer, departments=())
    with pytest.raises(Forbidden):
        participation.exclude_person(db, manager, campaign_id, person.user_id, "長期出張")
    with pytest.raises(Forbidden):
        participation.department_status(db, manager, campaign_id,
                                        department_id(db, "kumin-koseki"))


def test_editing_questions_after_opening_is_refused_with_a_message(db, reviewer, make_user):
    make_user("taro", department="kumin-koseki")
    campaign_id = make_campaign(db, reviewer)
    question_id = db.execute("SELECT question_id FROM campaign_questions").fetchone()[0]
    open_(db, reviewer, campaign_id)
    before = db.execute("SELECT * FROM campaign_questions ORDER BY question_id").fetchall()
    attempts = [
        lambda: campaigns.update_question(db, reviewer, campaign_id, question_id,
                                          version=version(db, campaign_id), statement="変えた文です。",
                                          answer="1", item_code="", explanation="", case_id=""),
        lambda: campaigns.delete_question(db, reviewer, campaign_id, question_id,
                                          version=version(db, campaign_id)),
        lambda: campaigns.add_question(db, reviewer, campaign_id, version=version(db, campaign_id),
                                       statement="新しい問題です。", answer="0", item_code="",
                                       explanation="", case_id=""),
        lambda: campaigns.generate_questions(db, reviewer, campaign_id, section_codes=["4"],
                                             version=version(db, campaign_id)),
    ]
    for attempt in attempts:
        with pytest.raises(Invalid) as refused:
            attempt()
        assert "問題は変更できません" in refused.value.errors["questions"][0]
    assert db.execute("SELECT * FROM campaign_questions ORDER BY question_id").fetchall() == before


def test_question_page_after_opening_shows_why_nothing_was_saved(app, client, signed_in):
    reviewer = signed_in("reviewer", department="soumu-gyousei-joho")
    with app.app_context():
        db = get_db()
        campaign_id = make_campaign(db, reviewer)
        question_id = db.execute("SELECT question_id FROM campaign_questions").fetchone()[0]
        url = f"/campaigns/{campaign_id}/questions/{question_id}"
        html = client.get(url).get_data(as_text=True)
        open_(db, reviewer, campaign_id)
    response = client.post(url, data={
        "csrf_token": csrf_token(html), "version": re.search(r'name="version" value="(\d+)"', html).group(1),
        "statement": "開始後に書き換えた文", "answer": "1", "item_code": "", "explanation": "",
        "case_id": ""})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "問題は変更できません" in page and "開始後に書き換えた文" in page


# --- authoring ----------------------------------------------------------------------------------

def test_generated_questions_come_from_the_chosen_sections_with_explanations(db, reviewer):
    campaign_id = make_campaign(db, reviewer, sections=("3", "4"))
    rows = db.execute_returning_dicts("SELECT * FROM campaign_questions ORDER BY position")
    assert rows and {row["section_code"] for row in rows} == {"3", "4"}
    assert all(row["item_code"].split("-")[0] == row["section_code"] for row in rows)
    assert {row["answer"] for row in rows} == {0, 1}
    false = next(row for row in rows if not row["answer"])
    assert false["explanation"].startswith("誤りです") and "正しくは" in false["explanation"]
    # generating again adds nothing for items that already have a question
    assert campaigns.generate_questions(db, reviewer, campaign_id, section_codes=["3"],
                                        version=version(db, campaign_id)) == 0


def test_only_reviewers_author_campaigns(db, make_user):
    manager = make_user("boss", "manager")
    with pytest.raises(Forbidden):
        campaigns.create_campaign(db, manager, title="x", opens_at=OPENS, closes_at=CLOSES,
                                  whole_office=True, department_ids=[], questions_per_person="",
                                  pass_mark="0", retakes="none")


def test_settings_form_shows_each_error_beside_its_field(client, signed_in):
    signed_in("reviewer", department="soumu-gyousei-joho")
    response = post_form(client, "/campaigns/new", {
        "title": "", "opens_at": "2026-12-10T09:00", "closes_at": "2026-12-01T09:00",
        "target": "departments", "questions_per_person": "0", "pass_mark": "x",
        "retakes": "none"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    for message in ("名前を入力してください", "締切は開始より後にしてください",
                    "対象の部・課を1つ以上選ぶか", "1人あたりの問題数は", "合格点を0以上の数で"):
        assert message in page
    assert 'value="2026-12-10T09:00"' in page


def test_a_stale_settings_form_gets_409_and_keeps_what_was_typed(app, client, signed_in):
    reviewer = signed_in("reviewer", department="soumu-gyousei-joho")
    with app.app_context():
        campaign_id = make_campaign(get_db(), reviewer)
    url = f"/campaigns/{campaign_id}/edit"
    html = client.get(url).get_data(as_text=True)
    with app.app_context():  # someone else adds a question meanwhile
        db = get_db()
        campaigns.generate_questions(db, reviewer, campaign_id, section_codes=["4"],
                                     version=version(db, campaign_id))
    response = client.post(url, data={
        "csrf_token": csrf_token(html), "version": re.search(r'name="version" value="(\d+)"', html).group(1),
        "title": "古い画面で書いた名前", "opens_at": OPENS, "closes_at": CLOSES, "target": "whole",
        "questions_per_person": "", "pass_mark": "1", "retakes": "none"})
    assert response.status_code == 409
    assert "古い画面で書いた名前" in response.get_data(as_text=True)
    with app.app_context():
        assert participation.campaign_row(get_db(), campaign_id)["title"] == "令和8年度 自己点検"


def test_a_question_links_only_a_published_case(db, reviewer):
    campaign_id = make_campaign(db, reviewer)
    question = db.execute_returning_dicts("SELECT * FROM campaign_questions LIMIT 1")[0]
    published = db.execute("SELECT case_id FROM cases WHERE status = 'published' LIMIT 1").fetchone()[0]
    fields = dict(statement=question["statement"], answer=str(question["answer"]),
                  item_code=question["item_code"], explanation="説明")
    with pytest.raises(Invalid) as refused:
        campaigns.update_question(db, reviewer, campaign_id, question["question_id"],
                                  version=version(db, campaign_id), case_id="999999", **fields)
    assert "公開された事例だけ" in refused.value.errors["case_id"][0]
    campaigns.update_question(db, reviewer, campaign_id, question["question_id"],
                              version=version(db, campaign_id), case_id=str(published), **fields)
    assert db.execute("SELECT case_id FROM campaign_questions WHERE question_id = ?",
                      [question["question_id"]]).fetchone()[0] == published


def test_question_page_suggests_cases_found_by_the_items_text(app, client, signed_in):
    reviewer = signed_in("reviewer", department="soumu-gyousei-joho")
    with app.app_context():
        db = get_db()
        campaign_id = make_campaign(db, reviewer)
        question_id = db.execute("SELECT question_id FROM campaign_questions").fetchone()[0]
    page = client.get(f"/campaigns/{campaign_id}/questions/{question_id}").get_data(as_text=True)
    assert len(re.findall(r'name="case_id" value="\d+"', page)) >= 1


def test_questions_are_drawn_evenly_across_sections_and_stable_per_attempt():
    questions = [{"question_id": n, "section_code": str(n % 3)} for n in range(30)]
    drawn = selfcheck.draw_questions(questions, 9, "1:2:1")
    assert len(drawn) == 9 and len(set(drawn)) == 9
    assert sorted(sum(1 for q in drawn if q % 3 == s) for s in range(3)) == [3, 3, 3]
    assert selfcheck.draw_questions(questions, 9, "1:2:1") == drawn
    assert selfcheck.draw_questions(questions, None, "x") == list(range(30))


# --- eligibility, exclusions, freezing ----------------------------------------------------------

def test_eligibility_leaves_out_people_on_leave_and_excluded_people(db, reviewer, make_user):
    ids = load_roster(db, [("1001", "kumin-koseki", "", "a@example.jp"),
                           ("1002", "kumin-koseki", "育児休業", "b@example.jp"),
                           ("1003", "kumin-koseki", "病気休暇", ""),
                           ("1004", "kumin-koseki", "", "d@example.jp"),
                           ("1005", "soumu-jinji", "", "e@example.jp")])
    manager = make_user("boss", "manager", department="kumin-koseki")
    campaign_id = make_campaign(db, reviewer)
    participation.exclude_person(db, manager, campaign_id, ids["1004"], "長期の研修派遣のため")
    people = participation.compute_eligibility(db, participation.campaign_row(db, campaign_id))
    assert people[ids["1001"]] == {"department_id": department_id(db, "kumin-koseki"),
                                   "eligible": True, "reason": ""}
    assert people[ids["1002"]]["reason"] == "on_leave:childcare_leave"
    assert people[ids["1003"]]["reason"] == "on_leave:sick_leave"
    assert people[ids["1004"]]["reason"] == "excluded"
    assert people[ids["1005"]]["reason"] == "outside_target"
    audit = db.execute("SELECT detail FROM audit_log WHERE action = 'campaign_exclude'").fetchone()[0]
    assert json.loads(audit)["reason"] == "長期の研修派遣のため"
    status = participation.department_status(db, manager, campaign_id,
                                             department_id(db, "kumin-koseki"))
    # the 所属長's own (local) account is addressed too
    assert {p["employee_number"] or p["login"] for p in status["not_yet"]} == {"1001", "boss"}
    assert {(p["employee_number"], p["reason"]) for p in status["excluded"]} == {
        ("1002", "on_leave:childcare_leave"), ("1003", "on_leave:sick_leave"), ("1004", "excluded")}
    assert "score" not in str(status["not_yet"]) and "answers" not in status


def test_a_leave_covering_only_part_of_the_period_keeps_the_person_eligible(db, reviewer):
    ids = load_roster(db, [("2001", "kumin-koseki", "", "")])
    staff.change_status(db, users.SYSTEM, ids["2001"], status="病気休暇", starts_on=LONG_AGO,
                        ends_on=(TODAY + timedelta(days=3)).isoformat(), reason="診断書")
    campaign_id = make_campaign(db, reviewer)
    people = participation.compute_eligibility(db, participation.campaign_row(db, campaign_id))
    assert people[ids["2001"]]["eligible"]


def test_figures_are_frozen_when_the_campaign_closes(app, db, reviewer):
    ids = load_roster(db, [("3001", "kumin-koseki", "", ""), ("3002", "kumin-koseki", "", "")])
    campaign_id = make_campaign(db, reviewer)
    open_(db, reviewer, campaign_id)
    live = participation.campaign_report(db, campaign_id)
    assert live["total"]["eligible"] == 2 and not live["closed"]
    # open: a new leave moves the live figures
    staff.change_status(db, users.SYSTEM, ids["3002"], status="休職", starts_on=LONG_AGO,
                        reason="休職発令")
    assert participation.campaign_report(db, campaign_id)["total"]["eligible"] == 1
    campaigns.close_campaign(db, reviewer, campaign_id)
    frozen = participation.campaign_report(db, campaign_id)
    assert frozen["closed"] and frozen["total"]["eligible"] == 1
    # closed: neither a status change nor a transfer moves them any more
    staff.change_status(db, users.SYSTEM, ids["3002"], status="在職", starts_on=LONG_AGO,
                        reason="復職の記録の訂正")
    staff.change_status(db, users.SYSTEM, ids["3001"], status="退職", starts_on=LONG_AGO,
                        reason="退職")
    assert participation.campaign_report(db, campaign_id) == frozen
    with pytest.raises(Invalid):
        participation.exclude_person(db, reviewer, campaign_id, ids["3001"], "後から除外")


def test_campaign_report_json_has_the_documented_shape(app, db, reviewer):
    ids = load_roster(db, [("4001", "kumin-koseki", "", ""), ("4002", "kumin-koseki", "育児休業", ""),
                           ("4003", "kumin-kazei", "", "")])
    campaign_id = make_campaign(db, reviewer, departments=("kumin-koseki", "kumin-kazei"))
    open_(db, reviewer, campaign_id)
    finish(db, users.get_user(db, ids["4001"]), campaign_id)
    result = app.test_cli_runner().invoke(args=["campaign-report", str(campaign_id), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"campaign", "closed", "departments", "total"}
    assert report["campaign"] == campaign_id and report["closed"] is False
    by_code = {d["code"]: d for d in report["departments"]}
    for entry in report["departments"]:
        assert set(entry) == {"code", "name", "parent_code", "eligible", "completed", "excluded", "rate"}
    assert by_code["kumin-koseki"]["eligible"] == 1 and by_code["kumin-koseki"]["completed"] == 1
    assert by_code["kumin-koseki"]["rate"] == 1.0
    assert by_code["kumin-koseki"]["excluded"] == {"on_leave:childcare_leave": 1}
    assert by_code["kumin-koseki"]["parent_code"] == users.get_department(
        db, users.get_department_by_code(db, "kumin-koseki")["parent_id"])["code"]
    assert by_code["kumin-kazei"] == dict(by_code["kumin-kazei"], eligible=1, completed=0, rate=0.0)
    assert report["total"] == {"eligible": 2, "completed": 1, "rate": 0.5}
    assert app.test_cli_runner().invoke(args=["campaign-report", "99999", "--json"]).exit_code == 1


def test_opening_queues_one_invitation_per_eligible_person_with_an_address(db, reviewer, make_user):
    ids = load_roster(db, [("5001", "kumin-koseki", "", "a@example.jp"),
                           ("5002", "kumin-koseki", "", "b@example.jp"),
                           ("5003", "kumin-koseki", "", ""),              # no address
                           ("5004", "kumin-koseki", "産前産後休暇", "d@example.jp"),
                           ("5005", "kumin-koseki", "", "e@example.jp"),  # excluded
                           ("5006", "soumu-jinji", "", "f@example.jp")])  # outside the target
    manager = make_user("boss", "manager", department="kumin-koseki")
    campaign_id = make_campaign(db, reviewer)
    participation.exclude_person(db, manager, campaign_id, ids["5005"], "海外派遣中")
    assert open_(db, reviewer, campaign_id) == 2
    rows = db.execute_returning_dicts("SELECT * FROM outbox WHERE kind = 'campaign_invitation'")
    assert sorted(row["to_user_id"] for row in rows) == sorted([ids["5001"], ids["5002"]])
    assert all(f"/selfcheck/{campaign_id}" in row["body_text"] for row in rows)
    assert all("令和8年度 自己点検" in row["subject"] for row in rows)


def test_an_opening_refused_queues_no_mail(db, reviewer):
    load_roster(db, [("5101", "kumin-koseki", "", "a@example.jp")])
    campaign_id = make_campaign(db, reviewer, pass_mark="99", per_person="")
    with pytest.raises(Invalid):
        open_(db, reviewer, campaign_id)
    assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0


# --- taking it ----------------------------------------------------------------------------------

def answer_url(campaign_id, attempt_id, position):
    return f"/selfcheck/{campaign_id}/attempts/{attempt_id}/{position}"


def start_by_hand(client, campaign_id):
    page = client.get(f"/selfcheck/{campaign_id}").get_data(as_text=True)
    response = client.post(f"/selfcheck/{campaign_id}/start", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302
    return int(re.search(r"/attempts/(\d+)", response.headers["Location"]).group(1))


def test_banner_shows_on_every_page_until_the_campaign_is_done(app, client, signed_in, reviewer):
    user = signed_in("staff", department="kumin-koseki")
    with app.app_context():
        db = get_db()
        campaign_id = make_campaign(db, reviewer, per_person="1")
        assert "自己点検があります" not in client.get("/").get_data(as_text=True)  # a draft
        open_(db, reviewer, campaign_id)
    closes = date.fromisoformat(CLOSES[:10])
    banner = f"自己点検があります（期限 {closes.month}月{closes.day}日・約1分）"
    for url in ("/", "/cases", "/checklist"):
        assert banner in client.get(url).get_data(as_text=True)
    assert f'href="/selfcheck/{campaign_id}"' in client.get("/").get_data(as_text=True)
    with app.app_context():
        finish(get_db(), user, campaign_id)
    assert "自己点検があります" not in client.get("/").get_data(as_text=True)


def test_no_banner_for_people_outside_the_target(app, client, signed_in, reviewer):
    signed_in("staff", department="soumu-jinji")
    with app.app_context():
        db = get_db()
        open_(db, reviewer, make_campaign(db, reviewer))
    assert "自己点検があります" not in client.get("/").get_data(as_text=True)


def test_answer_shows_right_or_wrong_with_explanation_item_and_linked_case(app, client, signed_in,
                                                                          reviewer):
    signed_in("staff", department="kumin-koseki")
    with app.app_context():
        db = get_db()
        campaign_id = make_campaign(db, reviewer, per_person="1")
        question = db.execute_returning_dicts("SELECT * FROM campaign_questions")
        case = db.execute_returning_dicts(
            "SELECT case_id, title FROM cases WHERE status = 'published' LIMIT 1")[0]
        for q in question:
            campaigns.update_question(db, reviewer, campaign_id, q["question_id"],
                                      version=version(db, campaign_id), statement=q["statement"],
                                      answer=str(q["answer"]), item_code=q["item_code"],
                                      explanation="解説の文です。", case_id=str(case["case_id"]))
        open_(db, reviewer, campaign_id)
    attempt_id = start_by_hand(client, campaign_id)
    page = client.get(answer_url(campaign_id, attempt_id, 1)).get_data(as_text=True)
    assert page.count('<button type="submit" name="answer"') == 2 and "解説の文です" not in page
    with app.app_context():
        ids = selfcheck._attempt(get_db(), users.get_user(get_db(), _user_id(app, "staff-user")),
                                 campaign_id, attempt_id)["question_ids"]
        right = get_db().execute("SELECT answer FROM campaign_questions WHERE question_id = ?",
                                 ids[:1]).fetchone()[0]
    response = client.post(answer_url(campaign_id, attempt_id, 1),
                           data={"csrf_token": csrf_token(page), "answer": str(1 - right)})
    # the answer's own response says whether it was right (one request, no redirect) …
    assert response.status_code == 200
    answered = response.get_data(as_text=True)
    assert "不正解です" in answered and "解説の文です。" in answered
    assert f'/cases/{case["case_id"]}' in answered and "/checklist/items/3-" in answered
    # … and reloading the address shows the same
    page = client.get(answer_url(campaign_id, attempt_id, 1)).get_data(as_text=True)
    assert "不正解です" in page and "解説の文です。" in page and "data-answered" in page
    # the only question answered: the button leads straight to the result
    assert f'href="/selfcheck/{campaign_id}/attempts/{attempt_id}/result"' in page
    result = client.get(f"/selfcheck/{campaign_id}/attempts/{attempt_id}/result").get_data(as_text=True)
    assert "1問中 0問正解" in result and "もう一度" in result and "/checklist/items/3-" in result


def _user_id(app, login_id):
    with app.app_context():
        return get_db().execute("SELECT user_id FROM users WHERE login = ?", [login_id]).fetchone()[0]


def test_a_closed_browser_resumes_where_it_stopped(app, client, signed_in, reviewer):
    signed_in("staff", department="kumin-koseki")
    with app.app_context():
        db = get_db()
        campaign_id = make_campaign(db, reviewer, per_person="3")
        open_(db, reviewer, campaign_id)
    attempt_id = start_by_hand(client, campaign_id)
    page = client.get(answer_url(campaign_id, attempt_id, 1)).get_data(as_text=True)
    answered = client.post(answer_url(campaign_id, attempt_id, 1),
                           data={"csrf_token": csrf_token(page), "answer": "1"}).get_data(as_text=True)
    # 「次の問題へ」 goes straight to the next question (no detour through a redirect)
    assert f'href="{answer_url(campaign_id, attempt_id, 2)}"' in answered
    other = app.test_client()  # a new browser
    login(other, "staff-user")
    page = other.get(f"/selfcheck/{campaign_id}").get_data(as_text=True)
    assert "続きから答える" in page
    response = other.get(f"/selfcheck/{campaign_id}/attempts/{attempt_id}")
    assert response.headers["Location"].endswith(answer_url(campaign_id, attempt_id, 2))
    # starting again (a second click on 「始める」) gives the same attempt
    assert start_by_hand(other, campaign_id) == attempt_id


def test_a_double_answer_records_one_answer(app, client, signed_in, reviewer):
    signed_in("staff", department="kumin-koseki")
    with app.app_context():
        db = get_db()
        campaign_id = make_campaign(db, reviewer, per_person="2")
        open_(db, reviewer, campaign_id)
    attempt_id = start_by_hand(client, campaign_id)
    url = answer_url(campaign_id, attempt_id, 1)
    token = csrf_token(client.get(url).get_data(as_text=True))
    first = client.post(url, data={"csrf_token": token, "answer": "1"})
    second = client.post(url, data={"csrf_token": token, "answer": "0"})  # a second tab
    assert first.status_code == second.status_code == 200
    # the second tab is told the first answer (○), not the one it sent
    assert "あなたの答え：○" in second.get_data(as_text=True)
    with app.app_context():
        rows = get_db().execute("SELECT answer FROM campaign_answers WHERE attempt_id = ?",
                                [attempt_id]).fetchall()
    assert rows == [(1,)]


def test_two_tabs_answering_the_last_questions_at_once_finish_the_attempt_once(
        app, db, reviewer, make_user):
    """Each answer is its own one-statement write (kb.db.write_alone) and whoever wrote the
    last one finishes the attempt: two tabs answering the last two questions at the same
    moment, on two connections, must neither leave it unfinished nor count a score twice."""
    campaign_id = make_campaign(db, reviewer, per_person="2", pass_mark="2")
    open_(db, reviewer, campaign_id)
    path = database_path(app.config["DATA_DIR"])
    for n in range(12):
        person = make_user(f"tab{n:02d}", "staff", department="kumin-koseki")
        attempt_id = selfcheck.start_attempt(db, person, campaign_id)
        ids = selfcheck._attempt(db, person, campaign_id, attempt_id)["question_ids"]
        rights = [db.execute("SELECT answer FROM campaign_questions WHERE question_id = ?",
                             [q]).fetchone()[0] for q in ids]
        barrier, errors = threading.Barrier(2), []

        def tab(position):
            connection = open_db(path)
            try:
                barrier.wait()
                selfcheck.answer_question(connection, person, campaign_id, attempt_id, position,
                                          rights[position - 1])
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(error)
            finally:
                connection.close()

        tabs = [threading.Thread(target=tab, args=(position,)) for position in (1, 2)]
        for thread in tabs:
            thread.start()
        for thread in tabs:
            thread.join()
        assert not errors
        attempt = selfcheck._attempt(db, person, campaign_id, attempt_id)
        assert attempt["finished_at"] and attempt["score"] == 2 and attempt["passed"] == 1


def test_an_answer_written_inside_a_transaction_rolls_back_with_it(db, reviewer, make_user):
    """`init --demo` answers inside its one transaction: a failure after leaves nothing."""
    campaign_id = make_campaign(db, reviewer, per_person="2")
    open_(db, reviewer, campaign_id)
    person = make_user("demo-like", "staff", department="kumin-koseki")
    attempt_id = selfcheck.start_attempt(db, person, campaign_id)
    with pytest.raises(RuntimeError):
        with transaction(db):
            selfcheck.answer_question(db, person, campaign_id, attempt_id, 1, "1")
            raise RuntimeError("a later step failed")
    assert db.execute("SELECT count(*) FROM campaign_answers").fetchone()[0] == 0


def test_an_answer_after_closing_time_is_refused_and_not_recorded(app, client, signed_in, reviewer):
    user = signed_in("staff", department="kumin-koseki")
    with app.app_context():
        db = get_db()
        campaign_id = make_campaign(db, reviewer, per_person="2")
        open_(db, reviewer, campaign_id)
        attempt_id = selfcheck.start_attempt(db, user, campaign_id)
        with pytest.raises(Invalid) as refused:
            selfcheck.answer_question(db, user, campaign_id, attempt_id, 1, "1",
                                      now=f"{TODAY + timedelta(days=14)}T17:00")
        assert "締切の日時を過ぎた" in refused.value.errors["answer"][0]
    url = answer_url(campaign_id, attempt_id, 1)
    token = csrf_token(client.get(url).get_data(as_text=True))
    with app.app_context():
        campaigns.close_campaign(get_db(), reviewer, campaign_id)
    response = client.post(url, data={"csrf_token": token, "answer": "1"})
    assert response.status_code == 409
    assert "締切の日時を過ぎたため、この回答は記録されませんでした" in response.get_data(as_text=True)
    with app.app_context():
        assert get_db().execute("SELECT count(*) FROM campaign_answers").fetchone()[0] == 0
    assert "締め切りました" in client.get(f"/selfcheck/{campaign_id}").get_data(as_text=True)


def test_retakes_are_offered_until_passed_only_when_allowed(db, reviewer, make_user):
    taro = make_user("taro", department="kumin-koseki")
    hanako = make_user("hanako", department="kumin-koseki")
    retakes = make_campaign(db, reviewer, per_person="2", pass_mark="2")
    once = make_campaign(db, reviewer, per_person="2", pass_mark="2", retakes="none")
    for campaign_id in (retakes, once):
        open_(db, reviewer, campaign_id)
    failed = finish(db, taro, retakes, right=False)
    assert selfcheck.result(db, taro, retakes, failed)["can_retake"]
    passed = finish(db, taro, retakes, right=True)
    assert passed != failed and not selfcheck.result(db, taro, retakes, passed)["can_retake"]
    with pytest.raises(Invalid):
        selfcheck.start_attempt(db, taro, retakes)
    finish(db, hanako, once, right=False)
    with pytest.raises(Invalid):
        selfcheck.start_attempt(db, hanako, once)


def test_a_person_sees_only_their_own_attempts(db, reviewer, make_user):
    taro = make_user("taro", department="kumin-koseki")
    hanako = make_user("hanako", department="kumin-koseki")
    campaign_id = make_campaign(db, reviewer, per_person="1")
    open_(db, reviewer, campaign_id)
    attempt_id = finish(db, taro, campaign_id)
    with pytest.raises(NotFound):
        selfcheck.result(db, hanako, campaign_id, attempt_id)
    with pytest.raises(NotFound):
        selfcheck.question(db, hanako, campaign_id, attempt_id, 1)


def test_managers_get_item_rates_of_their_department_not_answers(db, reviewer, make_user):
    manager = make_user("boss", "manager", department="kumin-koseki")
    people = [make_user(login, department="kumin-koseki") for login in ("taro", "jiro", "saburo")]
    campaign_id = make_campaign(db, reviewer, per_person="")
    open_(db, reviewer, campaign_id)
    for person in people:
        finish(db, person, campaign_id, right=False)
    campaigns.close_campaign(db, reviewer, campaign_id)  # live rates are not for managers
    rates = participation.item_rates(db, manager, campaign_id, department_id(db, "kumin-koseki"))
    assert rates and all(r["correct"] == 0 and r["answers"] == 3 for r in rates)
    assert set(rates[0]) == {"item_code", "item_text", "answers", "correct", "rate"}
    with pytest.raises(Forbidden):
        participation.item_rates(db, manager, campaign_id)  # the whole office: reviewers only


def test_results_csv_is_for_reviewers_and_neutralises_formulas(app, client, signed_in, make_user):
    reviewer = signed_in("reviewer", department="soumu-gyousei-joho")
    taro = make_user("taro", department="kumin-koseki")
    with app.app_context():
        db = get_db()
        db.execute("UPDATE users SET display_name = '=HYPERLINK(\"x\")' WHERE user_id = ?",
                   [taro.user_id])
        db.conn.commit()
        campaign_id = make_campaign(db, reviewer, per_person="1")
        open_(db, reviewer, campaign_id)
        finish(db, taro, campaign_id)
    response = client.get(f"/campaigns/{campaign_id}/results.csv")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert rows[0][:3] == ["職員番号", "氏名", "所属"]
    row = next(r for r in rows if r[0] == "taro")
    assert row[1].startswith("'=") and row[3] == "対象" and row[8] == "合格"


def test_staff_cannot_reach_the_authoring_pages(client, signed_in):
    signed_in("staff")
    assert client.get("/campaigns").status_code == 403
    assert client.get("/campaigns/new").status_code == 403


def test_a_reviewer_makes_and_opens_a_campaign_through_the_pages(app, client, signed_in):
    signed_in("reviewer", department="soumu-gyousei-joho")
    response = post_form(client, "/campaigns/new", {
        "title": "FAXとメールの自己点検", "opens_at": OPENS, "closes_at": CLOSES, "target": "whole",
        "questions_per_person": "4", "pass_mark": "3", "retakes": "until_passed"})
    assert response.status_code == 302
    url = response.headers["Location"]
    campaign_id = int(url.rsplit("/", 1)[1])
    page = client.get(url).get_data(as_text=True)
    version_now = re.search(r'name="version" value="(\d+)"', page).group(1)
    response = client.post(f"/campaigns/{campaign_id}/generate", data={
        "csrf_token": csrf_token(page), "version": version_now, "section_codes": ["3", "4"]})
    assert response.status_code == 302
    page = client.get(url).get_data(as_text=True)
    response = client.post(f"/campaigns/{campaign_id}/open", data={
        "csrf_token": csrf_token(page),
        "version": re.search(r'name="version" value="(\d+)"', page).group(1)})
    assert response.status_code == 302
    page = client.get(url).get_data(as_text=True)
    assert "実施中" in page and "回答状況" in page


def test_campaign_report_of_an_unknown_campaign_says_so_in_japanese(app):
    result = app.test_cli_runner().invoke(args=["campaign-report", "999", "--json"])
    assert result.exit_code == 1
    assert "自己点検 999 は登録されていません。" in result.output
