"""Trainers' workshops: CRUD, who may do what, and the handout, Markdown, quiz and CSV."""

import csv
import io

import pytest

from kb import checklist, workshops
from kb.db import get_db
from kb.exceptions import Forbidden, Invalid, NotFound
from tests.conftest import csrf_token, login
from tests.reporting import insert_undated_near_miss


def case_id_of(db, external_id):
    return db.execute("SELECT case_id FROM cases WHERE external_id = ?", [external_id]).fetchone()[0]


@pytest.fixture
def trainers(make_user):
    return make_user("trainer-a", "trainer", department="soumu-jinji"), \
        make_user("trainer-b", "trainer", department="soumu-jinji")


@pytest.fixture
def fax_workshop(app, trainers, make_user):
    """A workshop with two FAX cases, the first linked to checklist items 3-3 and 3-5.

    Built in an app context of its own: a request must never share ``g`` with a test's.
    """
    owner, _ = trainers
    reviewer = make_user("checker", "reviewer", department="soumu-gyousei-joho")
    with app.app_context():
        return _build_fax_workshop(get_db(), owner, reviewer)


def _build_fax_workshop(db, owner, reviewer):
    first, second = case_id_of(db, "ext-0009"), case_id_of(db, "ext-0010")
    countermeasure_id = db.execute("SELECT countermeasure_id FROM countermeasures WHERE case_id = ?"
                                   " ORDER BY position LIMIT 1", [first]).fetchone()[0]
    checklist.set_countermeasure_items(db, reviewer, countermeasure_id, ["3-3", "3-5"])
    checklist.set_case_items(db, reviewer, second, ["3-1", "3-2"])
    workshop_id = workshops.create_workshop(db, owner, title="FAX誤送信を防ぐ", held_on="2026-12-10")
    workshops.add_case(db, owner, workshop_id, first)
    workshops.add_case(db, owner, workshop_id, second)
    workshops.set_note(db, owner, workshop_id, first, "まず番号の確認手順を聞く")
    return workshop_id, first, second


def test_crud_order_and_notes(db, trainers, fax_workshop):
    owner, _ = trainers
    workshop_id, first, second = fax_workshop
    assert [c["case_id"] for c in workshops.workshop_cases(db, owner, workshop_id)] == [first, second]
    workshops.move_case(db, owner, workshop_id, second, -1)
    assert [c["case_id"] for c in workshops.workshop_cases(db, owner, workshop_id)] == [second, first]
    assert workshops.add_case(db, owner, workshop_id, first) is False  # already there
    workshops.remove_case(db, owner, workshop_id, second)
    cases = workshops.workshop_cases(db, owner, workshop_id)
    assert [(c["case_id"], c["note"]) for c in cases] == [(first, "まず番号の確認手順を聞く")]
    workshops.update_workshop(db, owner, workshop_id, title="FAX研修", held_on="", audience_department_id="",
                              questions=["この番号は誰が確認したか"], shared=True)
    assert workshops.get_workshop(db, owner, workshop_id)["questions"] == ["この番号は誰が確認したか"]


def test_another_trainer_may_read_a_shared_workshop_but_never_edit_it(db, trainers, fax_workshop):
    owner, other = trainers
    workshop_id, first, _ = fax_workshop
    with pytest.raises(NotFound):
        workshops.get_workshop(db, other, workshop_id)
    workshops.update_workshop(db, owner, workshop_id, title="FAX誤送信を防ぐ", held_on="",
                              audience_department_id=None, questions=list(workshops.DEFAULT_QUESTIONS), shared=True)
    assert workshops.get_workshop(db, other, workshop_id)["can_edit"] is False
    with pytest.raises(Forbidden):
        workshops.set_note(db, other, workshop_id, first, "横から")
    copy_id = workshops.copy_workshop(db, other, workshop_id)
    copy = workshops.get_workshop(db, other, copy_id)
    assert copy["can_edit"] and copy["title"] == "FAX誤送信を防ぐ（コピー）"
    assert len(workshops.workshop_cases(db, other, copy_id)) == 2


def test_editing_another_trainers_workshop_through_the_web_is_403(client, trainers, fax_workshop, app):
    workshop_id, first, _ = fax_workshop
    with app.app_context():
        db = get_db()
        owner, _ = trainers
        workshops.update_workshop(db, owner, workshop_id, title="FAX誤送信を防ぐ", held_on="",
                                  audience_department_id=None, questions=[], shared=True)
    login(client, "trainer-b")
    page = client.get(f"/workshops/{workshop_id}").get_data(as_text=True)
    token = csrf_token(page)
    assert client.post(f"/workshops/{workshop_id}", data={"csrf_token": token, "title": "乗っ取り"}).status_code == 403
    assert client.post(f"/workshops/{workshop_id}/cases/{first}",
                       data={"csrf_token": token, "action": "remove"}).status_code == 403


def test_staff_cannot_reach_workshops(client, signed_in):
    signed_in("staff")
    assert client.get("/workshops").status_code == 403


def test_an_unpublished_case_cannot_be_added(db, trainers, make_user):
    owner, _ = trainers
    reporter = make_user("reporter", "staff")
    draft = db["cases"].insert({"kind": "near_miss", "origin": "internal", "status": "submitted",
                                "title": "未公開", "reporter_id": reporter.user_id,
                                "department_id": reporter.department_id,
                                "created_at": "2026-01-01", "updated_at": "2026-01-01"}).last_pk
    workshop_id = workshops.create_workshop(db, owner, title="研修")
    with pytest.raises(Invalid) as caught:
        workshops.add_case(db, owner, workshop_id, draft)
    assert "公開された事例だけ" in caught.value.errors["case_id"][0]


def test_bad_workshop_input_is_refused_by_field(db, trainers):
    owner, _ = trainers
    with pytest.raises(Invalid) as caught:
        workshops.create_workshop(db, owner, title="", held_on="2026-02-30")
    assert set(caught.value.errors) == {"title", "held_on"}


def test_handout_markdown_has_every_section_for_a_fixed_set_of_cases(db, trainers, fax_workshop):
    owner, _ = trainers
    workshop_id, first, second = fax_workshop
    workshop = workshops.get_workshop(db, owner, workshop_id)
    text = workshops.handout_markdown(workshop, workshops.workshop_cases(db, owner, workshop_id))
    seed = db.execute_returning_dicts("SELECT * FROM cases WHERE case_id = ?", [first])[0]
    assert text.startswith("# FAX誤送信を防ぐ\n")
    assert f"## 事例1　{seed['title']}" in text and "## 事例2　" in text
    for heading in ("### 何が起きたか", "### 原因", "### 再発防止策", "### 関係するチェックリストの項目", "### 話し合うこと"):
        assert heading in text
    assert "- 3-3 送信先番号は" in text
    assert f"<{seed['source_url']}>" in text
    assert "> メモ：まず番号の確認手順を聞く" in text
    assert "1. 自分の課で起こりうるか" in text


def test_handout_page_and_empty_state(client, signed_in, app):
    signed_in("trainer")
    with app.app_context():
        from kb import users
        db = get_db()
        trainer = users.get_user(db, db.execute("SELECT user_id FROM users WHERE login = 'trainer-user'").fetchone()[0])
        empty = workshops.create_workshop(db, trainer, title="まだ空の研修")
    html = client.get(f"/workshops/{empty}/handout").get_data(as_text=True)
    assert "この研修にはまだ事例がありません" in html
    assert "クイズにできる項目がありません" in client.get(f"/workshops/{empty}/quiz").get_data(as_text=True)
    csv_body = client.get(f"/workshops/{empty}/cases.csv").data
    assert csv_body.startswith(b"\xef\xbb\xbf") and csv_body.count(b"\r\n") == 1
    assert "（この研修にはまだ事例がありません。）" in client.get(f"/workshops/{empty}/handout.md").get_data(as_text=True)


def test_a_published_near_miss_without_its_day_is_handed_out_with_its_filing_day(
        client, signed_in, app):
    trainer = signed_in("trainer")
    with app.app_context():
        db = get_db()
        case_id = insert_undated_near_miss(db)
        workshop_id = workshops.create_workshop(db, trainer, title="日付の研修")
        workshops.add_case(db, trainer, workshop_id, case_id)
    html = client.get(f"/workshops/{workshop_id}/handout").get_data(as_text=True)
    assert "登録日 2026年3月1日" in html and "日付不明" not in html
    assert "・ヒヤリ・ハット・" in html and "・・" not in html  # no incident type: its kind
    markdown = client.get(f"/workshops/{workshop_id}/handout.md").get_data(as_text=True)
    assert "*庁内・ヒヤリ・ハット・庁内・登録日 2026年3月1日*" in markdown


def test_quiz_statements_trace_to_their_items_and_the_key_is_right(db, trainers, fax_workshop):
    owner, _ = trainers
    workshop_id, _, _ = fax_workshop
    quiz = workshops.build_quiz(workshops.workshop_cases(db, owner, workshop_id))
    items = {item["code"]: item for item in checklist.current_items(db)}
    assert [q["item_code"] for q in quiz] == ["3-1", "3-2", "3-3", "3-5"]
    for q in quiz:
        guidance = items[q["item_code"]]["guidance"]
        assert q["correct"] in guidance
        if q["answer"]:
            assert q["statement"] == q["correct"]
        else:
            assert q["statement"] != q["correct"] and q["statement"] not in guidance and q["change"]
    assert {q["answer"] for q in quiz} == {True, False}


@pytest.mark.parametrize("sentence, false", [
    ("送信前に別の職員が読み上げて照合します。", "送信前に同じ職員が読み上げて照合します。"),
    ("机上に残さず施錠保管します。", "机上に残さず開けたまま保管します。"),
    ("私物の機器は使いません。", "私物の機器は使います。"),
    ("宛先を確認してから送ります。", "宛先を確認してから送りません。"),
])
def test_falsify_changes_one_key_detail(sentence, false):
    assert workshops.falsify(sentence)[0] == false


def test_csv_opens_in_excel(db, trainers, fax_workshop):
    owner, _ = trainers
    workshop_id, first, _ = fax_workshop
    data = workshops.cases_csv(workshops.workshop_cases(db, owner, workshop_id))
    assert data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    assert text.endswith("\r\n")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0][:3] == ["順番", "事例番号", "件名"] and len(rows) == 3
    assert rows[1][1] == "ext-0009"
    # Cells with commas and new lines survive the round trip.
    assert "\n" in rows[1][9] or "," in text


def test_add_to_workshop_from_search_results(client, signed_in, app):
    trainer = signed_in("trainer", department="soumu-jinji")
    with app.app_context():
        db = get_db()
        workshop_id = workshops.create_workshop(db, trainer, title="FAX研修")
        fax_case = case_id_of(db, "ext-0009")
    html = client.get("/cases?q=FAX").get_data(as_text=True)
    assert "研修に追加" in html and f'<option value="{workshop_id}">FAX研修</option>' in html
    response = client.post("/workshops/add", data={"csrf_token": csrf_token(html), "workshop_id": workshop_id,
                                                   "case_id": fax_case, "back": "/cases?q=FAX"})
    assert response.status_code == 302 and response.headers["Location"] == "/cases?q=FAX"
    page = client.get(f"/workshops/{workshop_id}").get_data(as_text=True)
    assert f'href="/cases/{fax_case}"' in page
    evil = client.post("/workshops/add", data={"csrf_token": csrf_token(html), "workshop_id": workshop_id,
                                               "case_id": fax_case, "back": "//evil.example/"})
    assert evil.headers["Location"] == "/"
