"""自己点検 for the 所属長 (issue #13): their 所属's page, exclusions, paper answer sheets
and keying them in, and the reminder, digest and summary mails through a real SMTP server
on loopback."""

import json
import re
from datetime import datetime, time, timedelta

import pytest

from kb import campaigns, dates, participation, reminders, scheduler, selfcheck, users
from kb.db import database_path, get_db, open_db, transaction
from tests.conftest import csrf_token, login, make_app
from tests.smtp_server import SmtpServer
from tests.test_campaigns import TODAY, department_id, finish, load_roster, make_campaign, version

BASE_URL = "https://kb.ward.example.jp/kb"
# Closing three days ahead: today is a reminder day (CAMPAIGN_REMINDER_DAYS "3,1").
CLOSES = f"{TODAY + timedelta(days=3)}T17:00"
# The clock of every mail test: campaigns open, the scheduler runs, at this moment (or a
# given number of days and minutes later), never at the wall clock's, which may have
# passed midnight since TODAY was read.
NOW = datetime.combine(TODAY, time(10, 0), tzinfo=dates.OFFICE_TZ)
KOSEKI = "kumin-koseki"
CLOSED_SHEETS = "締め切った自己点検の回答用紙は印刷できません"


@pytest.fixture
def own_db(app):
    """A connection of the test's own, outside any app context (see tests/test_mail.py)."""
    connection = open_db(database_path(app.config["DATA_DIR"]))
    yield connection
    connection.close()


@pytest.fixture
def reviewer(make_user):
    return make_user("rev", "reviewer", department="soumu-gyousei-joho")


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


def use_smtp(app, smtp):
    app.config.update(SMTP_HOST=smtp.host, SMTP_PORT=smtp.port, SMTP_TIMEOUT=5,
                      PUBLIC_URL=BASE_URL, MAIL_FROM="情報管理担当 <kb@ward.example.jp>")
    return app


def set_email(db, user_id, address):
    with transaction(db):
        db.execute("UPDATE users SET email = ? WHERE user_id = ?", [address, user_id])


def setup_department(app, own_db, reviewer, make_user, **campaign_options):
    """kumin-koseki with its 所属長 (boss) and five people: done (1001, all wrong),
    not yet (1002), no address (1003), excluded (1004), on leave (1005); someone of
    another 所属 (1006) and that 所属's 所属長 (other-boss)."""
    ids = load_roster(own_db, [("1001", KOSEKI, "", "a@example.jp"),
                               ("1002", KOSEKI, "", "b@example.jp"),
                               ("1003", KOSEKI, "", ""),
                               ("1004", KOSEKI, "", "d@example.jp"),
                               ("1005", KOSEKI, "病気休暇", "e@example.jp"),
                               ("1006", "soumu-jinji", "", "f@example.jp")])
    boss = make_user("boss", "manager", department=KOSEKI)
    make_user("other-boss", "manager", department="soumu-jinji")
    set_email(own_db, boss.user_id, "boss@example.jp")
    with app.app_context():
        db = get_db()
        campaign_id = make_campaign(db, reviewer, departments=(KOSEKI, "soumu-jinji"),
                                    closes=campaign_options.pop("closes", CLOSES), **campaign_options)
        participation.exclude_person(db, boss, campaign_id, ids["1004"], "長期の研修派遣のため")
        open_at_now(db, reviewer, campaign_id)
        finish(db, users_get(db, ids["1001"]), campaign_id, right=False)
    return campaign_id, ids, boss


def open_at_now(db, reviewer, campaign_id):
    """Open at NOW: the invitations are dated then, so the scheduler at NOW sends them."""
    return campaigns.open_campaign(db, reviewer, campaign_id, version=version(db, campaign_id),
                                   now=NOW.strftime(campaigns.TIME_FORMAT))


def users_get(db, user_id):
    return users.get_user(db, user_id)


def page_of(app, campaign_id):
    with app.app_context():
        return f"/selfcheck/manage/{campaign_id}/{department_id(get_db(), KOSEKI)}"


def section(html, heading_id):
    """The text of one <section> of the 所属's page."""
    match = re.search(rf'<section aria-labelledby="{heading_id}">(.*?)</section>', html, re.S)
    assert match, heading_id
    return match.group(1)


# --- the 所属's page ------------------------------------------------------------------------------

def test_manager_sees_who_has_completed_not_yet_and_is_excluded_in_their_own_department(
        app, client, own_db, reviewer, make_user):
    campaign_id, ids, _ = setup_department(app, own_db, reviewer, make_user)
    login(client, "boss")
    index = client.get("/selfcheck/manage").get_data(as_text=True)
    assert "令和8年度 自己点検" in index and page_of(app, campaign_id) in index

    html = client.get(page_of(app, campaign_id)).get_data(as_text=True)
    done, not_yet, excluded = (section(html, h) for h in ("done-heading", "not-yet-heading",
                                                          "excluded-heading"))
    assert "職員 1001" in done and "オンライン" in done
    assert "職員 1002" in not_yet and "職員 1003" in not_yet and "boss さん" in not_yet
    assert "職員 1004" in excluded and "長期の研修派遣のため" in excluded
    assert "職員 1005" in excluded and "病気休暇" in excluded
    assert "職員 1006" not in html  # another 所属
    # 1003 has no address: flagged for paper, the others not
    row_1003 = re.search(r"<tr><td>1003</td>.*?</tr>", not_yet, re.S).group(0)
    row_1002 = re.search(r"<tr><td>1002</td>.*?</tr>", not_yet, re.S).group(0)
    assert "メールなし（紙で）" in row_1003 and "メールなし" not in row_1002


def test_manager_of_another_department_gets_403_and_staff_get_403(app, client, own_db, reviewer,
                                                                 make_user):
    campaign_id, ids, _ = setup_department(app, own_db, reviewer, make_user)
    page = page_of(app, campaign_id)
    login(client, "other-boss")
    assert client.get(page).status_code == 403
    assert client.get(f"{page}/sheets").status_code == 403
    assert client.get(f"{page}/paper/{ids['1002']}").status_code == 403
    token = csrf_token(client.get("/selfcheck/manage").get_data(as_text=True))
    response = client.post(f"{page}/exclusions", data={"csrf_token": token,
                                                       "user_id": ids["1002"], "reason": "出張"})
    assert response.status_code == 403
    # someone outside the campaign's target: 404, whoever asks
    outsider = make_user("outsider", department="kikaku-kouhou")
    assert client.get(f"{page}/paper/{outsider.user_id}").status_code == 404
    make_user("clerk", department=KOSEKI)
    client.post("/logout", data={"csrf_token": token})
    login(client, "clerk")
    assert client.get(page).status_code == 403
    assert client.get("/selfcheck/manage").status_code == 403
    assert own_db.execute("SELECT count(*) FROM campaign_exclusions").fetchone()[0] == 1


def test_the_manager_never_sees_individuals_answers_or_scores(app, client, own_db, reviewer,
                                                             make_user):
    campaign_id, ids, _ = setup_department(app, own_db, reviewer, make_user)
    statements = [row[0] for row in own_db.execute(
        "SELECT statement FROM campaign_questions WHERE campaign_id = ?", [campaign_id])]
    login(client, "boss")
    html = client.get(page_of(app, campaign_id)).get_data(as_text=True)
    # one person has finished (all wrong): no per-item rate, it would be their answers
    rates = section(html, "rates-heading")
    assert "<table" not in rates and "3人以上が答えた項目だけ" in rates
    assert not any(statement in html for statement in statements)
    assert "得点" not in html and "点数" not in html.replace("点数は表示されません", "")
    # with three people done the rates of the 所属 appear once it is closed (live rates
    # would move with each person who finishes), still without names
    with app.app_context():
        db = get_db()
        for number in ("1002", "1003"):
            finish(db, users_get(db, ids[number]), campaign_id, right=True)
    campaigns.close_campaign(own_db, reviewer, campaign_id)
    rates = section(client.get(page_of(app, campaign_id)).get_data(as_text=True), "rates-heading")
    assert "<table" in rates and "67%" in rates and "職員 100" not in rates


def test_an_exclusion_needs_a_reason_is_audited_and_changes_the_figures(app, client, own_db,
                                                                       reviewer, make_user):
    campaign_id, ids, boss = setup_department(app, own_db, reviewer, make_user)
    page = page_of(app, campaign_id)
    before = participation.campaign_report(own_db, campaign_id)["total"]["eligible"]
    login(client, "boss")
    token = csrf_token(client.get(page).get_data(as_text=True))

    refused = client.post(f"{page}/exclusions", data={"csrf_token": token,
                                                      "user_id": ids["1002"], "reason": "  "})
    assert refused.status_code == 422
    text = refused.get_data(as_text=True)
    assert f'id="{ids["1002"]}-errors"' in text and "除外する理由を書いてください" in text
    assert own_db.execute("SELECT count(*) FROM campaign_exclusions WHERE user_id = ?",
                          [ids["1002"]]).fetchone()[0] == 0

    response = client.post(f"{page}/exclusions", data={"csrf_token": token,
                                                       "user_id": ids["1002"], "reason": "海外出張のため"})
    assert response.status_code == 302
    assert participation.campaign_report(own_db, campaign_id)["total"]["eligible"] == before - 1
    audit = own_db.execute("SELECT user_id, detail FROM audit_log WHERE action = 'campaign_exclude'"
                           " ORDER BY audit_id DESC LIMIT 1").fetchone()
    assert audit[0] == boss.user_id
    assert json.loads(audit[1]) == {"user_id": ids["1002"], "reason": "海外出張のため"}
    assert "海外出張のため" in section(client.get(page).get_data(as_text=True), "excluded-heading")

    assert client.post(f"{page}/exclusions/{ids['1002']}/delete",
                       data={"csrf_token": token}).status_code == 302
    assert participation.campaign_report(own_db, campaign_id)["total"]["eligible"] == before
    assert own_db.execute("SELECT count(*) FROM audit_log WHERE action = 'campaign_include'"
                          ).fetchone()[0] == 1


def test_an_excluded_person_who_answers_online_is_shown_as_answered_and_counts_once_included(
        app, client, own_db, reviewer, make_user):
    campaign_id, ids, _ = setup_department(app, own_db, reviewer, make_user)
    page = page_of(app, campaign_id)
    with app.app_context():
        finish(get_db(), users_get(get_db(), ids["1004"]), campaign_id)  # excluded, answers anyway
    login(client, "boss")
    excluded = section(client.get(page).get_data(as_text=True), "excluded-heading")
    row = re.search(r"<tr><td>1004</td>.*?</tr>", excluded, re.S).group(0)
    assert "回答済み" in row and "除外を取り消すと回答に数えます" in row
    assert "回答済み" not in re.search(r"<tr><td>1005</td>.*?</tr>", excluded, re.S).group(0)
    completed = participation.campaign_report(own_db, campaign_id)["total"]["completed"]
    token = csrf_token(client.get(page).get_data(as_text=True))
    assert client.post(f"{page}/exclusions/{ids['1004']}/delete",
                       data={"csrf_token": token}).status_code == 302
    assert participation.campaign_report(own_db, campaign_id)["total"]["completed"] == completed + 1
    assert "職員 1004" in section(client.get(page).get_data(as_text=True), "done-heading")


def test_exclusions_are_refused_once_the_campaign_is_closed(app, client, own_db, reviewer,
                                                           make_user):
    campaign_id, ids, _ = setup_department(app, own_db, reviewer, make_user)
    campaigns.close_campaign(own_db, reviewer, campaign_id)
    page = page_of(app, campaign_id)
    login(client, "boss")
    html = client.get(page).get_data(as_text=True)
    assert "対象から除外する" not in html and "確定しています" in html
    response = client.post(f"{page}/exclusions", data={
        "csrf_token": csrf_token(html), "user_id": ids["1002"], "reason": "出張"})
    assert response.status_code == 422
    assert "締め切った自己点検の対象者は変更できません" in response.get_data(as_text=True)
    assert own_db.execute("SELECT count(*) FROM campaign_exclusions").fetchone()[0] == 1


# --- paper ----------------------------------------------------------------------------------------

def attempt_of(db, user_id, campaign_id):
    rows = db.execute_returning_dicts("SELECT * FROM campaign_attempts WHERE user_id = ?"
                                      " AND campaign_id = ? ORDER BY number", [user_id, campaign_id])
    return rows[-1] if rows else None


def statements_of(db, attempt):
    by_id = dict(db.execute("SELECT question_id, statement FROM campaign_questions"))
    return [by_id[q] for q in json.loads(attempt["question_ids"])]


def test_paper_sheets_print_each_persons_own_questions_one_page_each(app, client, own_db,
                                                                    reviewer, make_user):
    campaign_id, ids, _ = setup_department(app, own_db, reviewer, make_user, per_person="3",
                                           sections=("3", "4"))
    with app.app_context():  # 1002 started online and answered the first question
        db = get_db()
        person = users_get(db, ids["1002"])
        started = selfcheck.start_attempt(db, person, campaign_id)
        selfcheck.answer_question(db, person, campaign_id, started, 1, 1)
    assert attempt_of(own_db, ids["1003"], campaign_id) is None
    login(client, "boss")
    response = client.get(f"{page_of(app, campaign_id)}/sheets")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    sheets = re.findall(r'<article class="answer-sheet">(.*?)</article>', html, re.S)
    names = [re.search(r'answer-sheet-name">([^<]+)<', s).group(1) for s in sheets]
    assert sorted(names) == ["boss さん", "職員 1002", "職員 1003"]  # not done, not excluded
    for sheet, name in zip(sheets, names):
        assert "戸籍住民課" in sheet
        number = name.split()[-1] if name.startswith("職員") else None
        user_id = ids[number] if number else own_db.execute(
            "SELECT user_id FROM users WHERE login = 'boss'").fetchone()[0]
        attempt = attempt_of(own_db, user_id, campaign_id)  # made now for those without one
        assert attempt["finished_at"] is None
        printed = re.findall(r'answer-sheet-statement">([^<]+)<', sheet)
        assert printed == statements_of(own_db, attempt) and len(printed) == 3
        assert sheet.count('class="answer-box"') == 2 * (3 - (name == "職員 1002"))
    assert "オンラインで回答済み" in sheets[names.index("職員 1002")]
    # one A4 page a person when printed
    css = client.get("/static/kb.css").get_data(as_text=True)
    assert re.search(r"@media print \{[^@]*\.answer-sheet \{[^}]*break-after: page", css)
    # printing again makes no new attempts
    count = own_db.execute("SELECT count(*) FROM campaign_attempts").fetchone()[0]
    client.get(f"{page_of(app, campaign_id)}/sheets")
    assert own_db.execute("SELECT count(*) FROM campaign_attempts").fetchone()[0] == count


def key_in_form(client, url):
    html = client.get(url).get_data(as_text=True)
    keys = re.findall(r'name="(q\d+)" value="1"', html)
    attempt_id = re.search(r'name="attempt_id" value="(\d+)"', html).group(1)
    return csrf_token(html), attempt_id, keys


def test_keyed_in_answers_are_scored_and_marked_on_paper_with_who_keyed_them(
        app, client, own_db, reviewer, make_user):
    campaign_id, ids, boss = setup_department(app, own_db, reviewer, make_user, pass_mark="2")
    page = page_of(app, campaign_id)
    login(client, "boss")
    client.get(f"{page}/sheets")
    url = f"{page}/paper/{ids['1003']}"
    token, attempt_id, keys = key_in_form(client, url)
    right = dict(own_db.execute("SELECT question_id, answer FROM campaign_questions"))
    answers = {key: str(right[int(key[1:])]) for key in keys}
    answers[keys[0]] = str(1 - right[int(keys[0][1:])])  # one wrong

    missing = client.post(url, data={"csrf_token": token, "attempt_id": attempt_id,
                                     **{k: v for k, v in answers.items() if k != keys[-1]}})
    assert missing.status_code == 422
    text = missing.get_data(as_text=True)
    assert f'id="{keys[-1]}-errors"' in text and "○か×を選んでください" in text
    assert f'name="{keys[1]}" value="{answers[keys[1]]}" checked' in text  # what was typed stays
    assert own_db.execute("SELECT count(*) FROM campaign_answers a JOIN campaign_attempts t"
                          " USING (attempt_id) WHERE t.user_id = ?", [ids["1003"]]).fetchone()[0] == 0

    done = client.post(url, data={"csrf_token": token, "attempt_id": attempt_id, **answers})
    assert done.status_code == 302
    attempt = attempt_of(own_db, ids["1003"], campaign_id)
    assert attempt["finished_at"] and attempt["on_paper"] == 1
    assert attempt["keyed_in_by"] == boss.user_id
    assert attempt["score"] == len(keys) - 1 and attempt["passed"] == int(len(keys) - 1 >= 2)
    audit = own_db.execute("SELECT user_id, detail FROM audit_log"
                           " WHERE action = 'campaign_paper_key_in'").fetchone()
    assert audit[0] == boss.user_id and json.loads(audit[1])["user_id"] == ids["1003"]
    html = client.get(page).get_data(as_text=True)
    done_rows = section(html, "done-heading")
    assert re.search(r"<td>1003</td><td>職員 1003</td><td>[^<]*</td><td>紙で回答</td>", done_rows)
    assert str(attempt["score"]) + "問" not in html
    # keying the same sheet in twice records nothing more
    again = client.post(url, data={"csrf_token": token, "attempt_id": attempt_id, **answers})
    assert again.status_code == 422 and "既に回答を終えています" in again.get_data(as_text=True)
    assert own_db.execute("SELECT count(*) FROM campaign_attempts WHERE user_id = ?",
                          [ids["1003"]]).fetchone()[0] == 1
    # the person sees their own result online, as with an online attempt
    with app.app_context():
        db = get_db()
        outcome = selfcheck.result(db, users_get(db, ids["1003"]), campaign_id, attempt["attempt_id"])
        assert outcome["score"] == len(keys) - 1 and len(outcome["missed"]) == 1


def test_keying_in_is_allowed_until_the_campaign_is_closed(app, client, own_db, reviewer,
                                                          make_user):
    campaign_id, ids, _ = setup_department(app, own_db, reviewer, make_user)
    page = page_of(app, campaign_id)
    login(client, "boss")
    client.get(f"{page}/sheets")
    url = f"{page}/paper/{ids['1002']}"
    token, attempt_id, keys = key_in_form(client, url)
    campaigns.close_campaign(own_db, reviewer, campaign_id)
    response = client.post(url, data={"csrf_token": token, "attempt_id": attempt_id,
                                      **{key: "1" for key in keys}})
    assert response.status_code == 422
    assert "締め切った自己点検の用紙は入力できません" in response.get_data(as_text=True)
    assert attempt_of(own_db, ids["1002"], campaign_id)["finished_at"] is None
    refused = client.get(f"{page}/sheets")
    assert refused.status_code == 422 and CLOSED_SHEETS in refused.get_data(as_text=True)


# --- reminders, digests, summaries ---------------------------------------------------------------

def run(app, days_later=0, minutes=0):
    """Run the due work as the scheduler of `serve` would, ``days_later`` (and ``minutes``)
    after NOW: the invitations queued at opening are due then too."""
    return scheduler.run_due_work(app, NOW + timedelta(days=days_later, minutes=minutes))


def received(smtp, subject_part):
    return sorted((r.rcpt_tos[0], r.message) for r in smtp.received
                  if subject_part in r.message["Subject"])


def test_reminders_go_only_to_eligible_people_not_done_once_a_day(app, own_db, smtp, reviewer,
                                                                  make_user):
    campaign_id, ids, _ = setup_department(app, own_db, reviewer, make_user)
    use_smtp(app, smtp)
    first = run(app)
    run(app, minutes=1)  # the same day again: nothing more
    reminded = [to for to, _ in received(smtp, "締切まであと")]
    # 1001 done, 1003 no address, 1004 excluded, 1005 on leave, 1006 another 所属 not done
    assert reminded == ["b@example.jp", "boss@example.jp", "f@example.jp"]
    assert first["jobs"]["campaign_reminders"]["reminders"] == 3
    [(_, message)] = [m for m in received(smtp, "締切まであと") if m[0] == "b@example.jp"]
    closing = TODAY + timedelta(days=3)
    assert message["Subject"] == \
        f"【自己点検の締切まであと3日】令和8年度 自己点検（期限 {closing.month}月{closing.day}日 17:00）"
    body = message.get_body(("plain",)).get_content()
    assert "職員 1002 様" in body and f"{BASE_URL}/selfcheck/{campaign_id}" in body.splitlines()

    run(app, days_later=1)  # two days before: not a reminder day
    assert len(received(smtp, "締切まであと")) == 3
    with app.app_context():  # 1002 finishes; boss is excluded on the day before
        db = get_db()
        finish(db, users_get(db, ids["1002"]), campaign_id)
        boss_id = db.execute("SELECT user_id FROM users WHERE login = 'boss'").fetchone()[0]
        participation.exclude_person(db, reviewer, campaign_id, boss_id, "病気療養のため")
    run(app, days_later=2)
    assert [to for to, m in received(smtp, "締切まであと1日")] == ["f@example.jp"]


def test_the_digest_lists_each_managers_non_respondents_by_name_with_a_link(app, own_db, smtp,
                                                                           reviewer, make_user):
    campaign_id, ids, _ = setup_department(app, own_db, reviewer, make_user)
    use_smtp(app, smtp)
    run(app)
    run(app, minutes=1)
    digests = received(smtp, "未回答者")
    # other-boss has no address: no digest (their 所属 shows it in the app)
    assert [to for to, _ in digests] == ["boss@example.jp"]
    message = digests[0][1]
    assert message["Subject"].startswith("【自己点検の未回答者 3人】令和8年度 自己点検")
    body = message.get_body(("plain",)).get_content()
    assert "■ 戸籍住民課（3人）" in body
    assert "職員 1002（1002）" in body and "boss さん" in body
    assert re.search(r"職員 1003（1003）\s*メールなし・紙で回答", body)
    for absent in ("職員 1001", "職員 1004", "職員 1005", "職員 1006"):
        assert absent not in body
    with app.app_context():
        koseki = department_id(get_db(), KOSEKI)
    assert f"　{BASE_URL}/selfcheck/manage/{campaign_id}/{koseki}" in body.splitlines()


def test_two_campaigns_due_the_same_day_make_one_reminder_and_one_digest_listing_both(
        app, own_db, smtp, reviewer, make_user):
    first_id, ids, _ = setup_department(app, own_db, reviewer, make_user)
    closing = TODAY + timedelta(days=1)  # the second closes sooner: also a reminder day
    with app.app_context():
        db = get_db()
        second_id = campaigns.create_campaign(
            db, reviewer, title="FAX・メール 自己点検", opens_at=f"{TODAY}T09:00",
            closes_at=f"{closing}T12:00", whole_office=False,
            department_ids=[department_id(db, KOSEKI)], questions_per_person="",
            pass_mark="1", retakes="none")
        campaigns.generate_questions(db, reviewer, second_id, section_codes=["4"],
                                     version=version(db, second_id))
        open_at_now(db, reviewer, second_id)
    use_smtp(app, smtp)
    run(app)
    run(app, minutes=1)
    run(app, minutes=600)  # later the same day: still nothing more
    reminders_to_b = [m for to, m in received(smtp, "締切まであと") if to == "b@example.jp"]
    assert len(reminders_to_b) == 1
    message = reminders_to_b[0]
    assert message["Subject"] == (f"【自己点検の締切まであと1日】FAX・メール 自己点検 ほか1件"
                                  f"（期限 {closing.month}月{closing.day}日 12:00）")
    body = message.get_body(("plain",)).get_content()
    lines = body.splitlines()
    # both campaigns, soonest deadline first, each with its deadline and link
    assert f"{BASE_URL}/selfcheck/{second_id}" in lines and f"{BASE_URL}/selfcheck/{first_id}" in lines
    assert lines.index(f"{BASE_URL}/selfcheck/{second_id}") < lines.index(f"{BASE_URL}/selfcheck/{first_id}")
    later = TODAY + timedelta(days=3)
    assert f"　期限：{closing.month}月{closing.day}日 12:00（あと1日）" in lines
    assert f"　期限：{later.month}月{later.day}日 17:00（あと3日）" in lines
    # 1001 finished the first campaign only: one reminder, for the second alone
    [for_1001] = [m for to, m in received(smtp, "締切まであと") if to == "a@example.jp"]
    assert f"/selfcheck/{first_id}" not in for_1001.get_body(("plain",)).get_content()
    digests = received(smtp, "未回答者")
    assert [to for to, _ in digests] == ["boss@example.jp"]
    digest = digests[0][1].get_body(("plain",)).get_content()
    koseki = department_id(own_db, KOSEKI)
    for campaign_id in (first_id, second_id):
        assert f"　{BASE_URL}/selfcheck/manage/{campaign_id}/{koseki}" in digest.splitlines()
    # the campaign pages count the one mail for each campaign it covers
    for campaign_id in (first_id, second_id):
        kinds = {row["kind"]: row for row in reminders.mail_counts(own_db, reviewer, campaign_id)}
        assert kinds["campaign_digest"]["total"] == 1
    assert {row["kind"]: row["total"] for row in reminders.mail_counts(
        own_db, reviewer, first_id)}["campaign_reminder"] == 3  # 1002, boss, 1006
    assert {row["kind"]: row["total"] for row in reminders.mail_counts(
        own_db, reviewer, second_id)}["campaign_reminder"] == 4  # 1001, 1002, 1004, boss


def test_the_summary_goes_to_the_author_once_after_closing(app, own_db, smtp, reviewer, make_user):
    campaign_id, ids, _ = setup_department(app, own_db, reviewer, make_user)
    set_email(own_db, reviewer.user_id, "rev@example.jp")
    use_smtp(app, smtp)
    run(app, days_later=4)  # after the closing time: closed by the scheduler, then summarised
    assert participation.campaign_row(own_db, campaign_id)["status"] == "closed"
    run(app, days_later=4, minutes=1)
    summaries = received(smtp, "【自己点検の結果】")
    assert [to for to, _ in summaries] == ["rev@example.jp"]
    body = summaries[0][1].get_body(("plain",)).get_content()
    report = participation.campaign_report(own_db, campaign_id)["total"]
    assert f"対象　{report['eligible']}人" in body and f"回答　{report['completed']}人" in body
    assert "戸籍住民課" in body and f"{BASE_URL}/campaigns/{campaign_id}" in body.splitlines()


def test_no_duplicate_sends_after_a_restart(app, own_db, smtp, reviewer, make_user):
    campaign_id, ids, _ = setup_department(app, own_db, reviewer, make_user)
    use_smtp(app, smtp)
    run(app)
    count = len(smtp.received)
    assert count >= 4  # invitations, reminders, the digest
    restarted = use_smtp(make_app(app.config["DATA_DIR"]), smtp)
    result = run(restarted, minutes=1)
    assert result["jobs"]["campaign_reminders"] == {"reminders": 0, "digests": 0}
    assert result["mail"]["sent"] == [] and len(smtp.received) == count
    keys = [row[0] for row in own_db.execute("SELECT dedupe_key FROM outbox")]
    assert len(keys) == len(set(keys)) == count


def test_the_campaign_page_shows_mails_queued_and_sent_per_kind(app, client, own_db, smtp,
                                                               make_user):
    reviewer = make_user("rev2", "reviewer", department="soumu-gyousei-joho")
    campaign_id, ids, _ = setup_department(app, own_db, reviewer, make_user)
    use_smtp(app, smtp)
    run(app)
    with transaction(own_db):  # one more reminder waiting
        own_db.execute("UPDATE outbox SET status = 'queued' WHERE mail_id = (SELECT max(mail_id)"
                       " FROM outbox WHERE kind = 'campaign_reminder')")
    login(client, "rev2")
    html = client.get(f"/campaigns/{campaign_id}").get_data(as_text=True)
    mails = section(html, "mail-heading")
    assert re.search(r"自己点検の案内</a></td><td>0</td><td>0</td><td>4</td><td>0</td><td>4</td>", mails)
    assert re.search(r"自己点検の督促</a></td><td>1</td><td>0</td><td>2</td><td>0</td><td>3</td>", mails)
    assert re.search(r"所属長への未回答者一覧</a></td><td>0</td><td>0</td><td>1</td>", mails)
    with app.app_context():
        assert reminders.mail_counts(get_db(), reviewer, campaign_id)[0]["kind"] == "campaign_invitation"


def test_managers_find_the_page_in_the_navigation_and_staff_do_not(client, signed_in):
    signed_in("manager", login_id="nav-boss")
    assert 'href="/selfcheck/manage"' in client.get("/").get_data(as_text=True)
    empty = client.get("/selfcheck/manage").get_data(as_text=True)
    assert "あなたの所属が対象の自己点検はまだありません" in empty


def test_a_bucho_sees_the_ka_under_their_bu_and_no_other(app, client, own_db, reviewer, make_user):
    campaign_id, ids, _ = setup_department(app, own_db, reviewer, make_user)
    make_user("bucho", "manager", department="kumin")
    login(client, "bucho")
    index = client.get("/selfcheck/manage").get_data(as_text=True)
    assert page_of(app, campaign_id) in index and "人事課" not in index
    assert "職員 1002" in client.get(page_of(app, campaign_id)).get_data(as_text=True)
    with app.app_context():
        jinji = department_id(get_db(), "soumu-jinji")
    assert client.get(f"/selfcheck/manage/{campaign_id}/{jinji}").status_code == 403


def test_a_reviewer_reaches_every_departments_page_from_the_list_and_the_campaign(
        app, client, own_db, reviewer, make_user):
    campaign_id, ids, _ = setup_department(app, own_db, reviewer, make_user)
    login(client, "rev")
    index = client.get("/selfcheck/manage")  # the breadcrumb of every 所属's page leads here
    assert index.status_code == 200
    html = index.get_data(as_text=True)
    assert page_of(app, campaign_id) in html and "人事課" in html
    assert "情報管理担当として、すべての所属を開けます" in html
    assert f'href="{page_of(app, campaign_id)}"' in client.get(f"/campaigns/{campaign_id}").get_data(as_text=True)
    assert "職員 1002" in client.get(page_of(app, campaign_id)).get_data(as_text=True)
