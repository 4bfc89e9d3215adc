import json
import re

import pytest

from kb import cases
from kb.db import get_db, utcnow
from kb.exceptions import NotFound


def add_internal_case(app, *, reporter, status, department_id=None, title="内部の報告"):
    with app.app_context():
        db = get_db()
        return db["cases"].insert({
            "kind": "near_miss", "origin": "internal", "status": status, "title": title,
            "department_id": department_id or reporter.department_id,
            "reporter_id": reporter.user_id, "task": "fax", "incident_type": "fax_missend",
            "summary": "送信前に番号の誤りに気づいた。", "created_at": utcnow(),
            "updated_at": utcnow(),
        }).last_pk


def external_case_id(app, external_id):
    with app.app_context():
        return get_db().execute("SELECT case_id FROM cases WHERE external_id = ?",
                                [external_id]).fetchone()[0]


def test_case_list_shows_all_seed_external_cases(client, signed_in):
    signed_in("staff")
    html = client.get("/cases").get_data(as_text=True)
    assert "180件の事例" in html
    assert "（1 / 6ページ）" in html


def test_case_list_filters_by_incident_type(client, signed_in):
    signed_in("staff")
    html = client.get("/cases?incident_type=fax_missend").get_data(as_text=True)
    assert "13件の事例" in html


def test_case_list_keyword_finds_the_cases_that_say_it_first(client, signed_in, app):
    signed_in("staff")
    html = client.get("/cases?q=ＢＣＣ").get_data(as_text=True)  # full-width is folded (NFKC)
    with app.app_context():
        saying_it = get_db().execute(
            "SELECT count(*) FROM cases WHERE title LIKE '%BCC%' OR summary LIKE '%BCC%'"
            " OR title LIKE '%Bcc%' OR summary LIKE '%Bcc%' OR summary LIKE '%bcc%'").fetchone()[0]
    titles = re.findall(r'<h2 class="card-title"><a href="/cases/\d+[^"]*">([^<]+)</a>', html)
    assert saying_it > 3
    top = titles[:3]
    assert all("BCC" in title.upper() or "TO" in title.upper() or "宛先" in title for title in top), top


def test_case_list_with_no_match_shows_a_helpful_empty_state(client, signed_in):
    signed_in("staff")
    html = client.get("/cases?q=ゾウガメ 天体望遠鏡").get_data(as_text=True)
    assert "0件の事例" in html
    assert "条件に合う事例はありません。" in html


def test_external_case_page_shows_source_and_municipality(client, signed_in, app):
    signed_in("staff")
    case_id = external_case_id(app, "ext-0001")
    html = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "施設利用者へのアンケートメールをBCCでなく宛先欄で送信" in html
    assert "茨城県鹿嶋市" in html
    assert 'href="https://city.kashima.ibaraki.jp/soshiki/42/82378.html"' in html
    assert "2024年12月6日" in html  # published_on
    assert "1,780人" in html
    assert "送信時にダブルチェックを行っていなかった。" in html


def test_gaps_in_an_external_case_are_shown_not_invented(client, signed_in, app):
    signed_in("staff")
    with app.app_context():
        case_id = get_db().execute(
            "SELECT case_id FROM cases c WHERE origin = 'external' AND NOT EXISTS"
            " (SELECT 1 FROM countermeasures m WHERE m.case_id = c.case_id)"
            " AND occurred_on IS NULL LIMIT 1").fetchone()[0]
    html = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "公表資料に再発防止策の記載はありません。" in html
    assert "記載なし" in html


def test_unknown_case_is_a_japanese_404(client, signed_in):
    signed_in("staff")
    response = client.get("/cases/999999")
    assert response.status_code == 404
    assert "ページが見つかりません" in response.get_data(as_text=True)


def test_draft_is_seen_only_by_its_reporter(client, signed_in, make_user, app, db):
    reporter = make_user("reporter", "staff")
    manager = make_user("boss", "manager")
    reviewer = make_user("checker", "reviewer", department="soumu-gyousei-joho")
    case_id = add_internal_case(app, reporter=reporter, status="draft")
    assert cases.read_case(db, reporter, case_id)["title"] == "内部の報告"
    for other in (manager, reviewer):
        with pytest.raises(NotFound):
            cases.read_case(db, other, case_id)


def test_unpublished_case_is_not_found_by_other_departments(client, make_user, app, db):
    reporter = make_user("reporter", "staff")
    same_dept_manager = make_user("boss", "manager")
    other_manager = make_user("other-boss", "manager", department="fukushi-kourei")
    other_staff = make_user("other-staff", "staff", department="fukushi-kourei")
    reviewer = make_user("checker", "reviewer", department="soumu-gyousei-joho")
    case_id = add_internal_case(app, reporter=reporter, status="submitted")
    for allowed in (reporter, same_dept_manager, reviewer):
        assert cases.read_case(db, allowed, case_id)["case_id"] == case_id
    for denied in (other_manager, other_staff):
        with pytest.raises(NotFound):
            cases.read_case(db, denied, case_id)
    assert case_id not in [c["case_id"] for c in
                           cases.list_cases(db, other_staff, page_size=500)["cases"]]


def test_unpublished_case_is_404_through_the_web_for_other_staff(client, signed_in, make_user, app):
    reporter = make_user("reporter", "staff", department="fukushi-kourei")
    case_id = add_internal_case(app, reporter=reporter, status="submitted", title="他課の未公開報告")
    signed_in("staff")
    assert client.get(f"/cases/{case_id}").status_code == 404
    assert "他課の未公開報告" not in client.get("/cases?q=他課").get_data(as_text=True)


def test_reading_an_unpublished_case_is_audited(make_user, app, db):
    reporter = make_user("reporter", "staff")
    reviewer = make_user("checker", "reviewer", department="soumu-gyousei-joho")
    case_id = add_internal_case(app, reporter=reporter, status="submitted")
    cases.read_case(db, reviewer, case_id)
    row = db.execute("SELECT actor, action FROM audit_log WHERE case_id = ?", [case_id]).fetchone()
    assert row == ("checker", "case_read")


def test_published_external_case_read_is_not_audited(make_user, app, db):
    staff = make_user("taro", "staff")
    case_id = external_case_id(app, "ext-0001")
    cases.read_case(db, staff, case_id)
    assert db.execute("SELECT count(*) FROM audit_log WHERE case_id = ?", [case_id]).fetchone()[0] == 0


@pytest.mark.parametrize("incident_type, channel, task", [
    ("fax_missend", "FAX", "fax"),
    ("oral_disclosure", "電話", "phone"),
    ("oral_disclosure", "郵送", "postal"),
    ("staff_misconduct", "ＵＳＢメモリ・紙書類", "media"),
    ("other", "保護者連絡アプリ", "system"),
    ("other", None, "other"),
])
def test_task_is_inferred_from_type_then_channel(incident_type, channel, task):
    assert cases.infer_task(incident_type, channel) == task


def test_front_page_shows_checklist_items_and_cases_for_the_chosen_task(client, signed_in, db):
    signed_in("staff")
    html = client.get("/?task=fax").get_data(as_text=True)
    fax_items = [row["code"] for row in db.query(
        "SELECT code, tasks FROM checklist_items") if "fax" in json.loads(row["tasks"])]
    assert fax_items
    for code in fax_items:
        assert f'<span class="item-code">{code}</span>' in html
    assert "この作業で起きた事例" in html
    assert "FAX誤送信" in html
    assert "取られた対策" in html


def test_front_page_without_a_task_invites_a_choice(client, signed_in):
    signed_in("staff")
    html = client.get("/?task=nonsense").get_data(as_text=True)
    assert "上の一覧から作業を選んでください。" in html


def test_checklist_page_lists_every_item_and_filters_by_task(client, signed_in):
    signed_in("staff")
    html = client.get("/checklist").get_data(as_text=True)
    assert html.count('class="item-code"') == 57
    assert "版：2024" in html
    phone = client.get("/checklist?task=phone").get_data(as_text=True)
    assert phone.count('class="item-code"') == 8


def test_cases_with_no_known_date_come_after_dated_ones(db, make_user):
    staff = make_user("taro", "staff")
    listed = cases.list_cases(db, staff, page_size=500)["cases"]
    dated = [bool(c["occurred_on"] or c["published_on"]) for c in listed]
    assert dated == sorted(dated, reverse=True)
    dates = [c["occurred_on"] or c["published_on"] for c in listed if c["occurred_on"] or c["published_on"]]
    assert dates == sorted(dates, reverse=True)


def test_countermeasures_of_several_cases_come_grouped_and_in_order(app, make_user):
    seed = {}
    with open("data/seed/external_cases.jsonl", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if len(record["countermeasures"]) >= 2:
                seed[record["id"]] = record["countermeasures"]
            if len(seed) == 3:
                break
    reporter = make_user("measureless", "staff")
    without = add_internal_case(app, reporter=reporter, status="draft")
    ids = {external_case_id(app, external_id): texts for external_id, texts in seed.items()}
    with app.app_context():
        found = cases.countermeasures_of(get_db(), [*ids, without])
    assert {case_id: [m["text"] for m in measures] for case_id, measures in found.items()} == ids
    assert all(m["case_id"] == case_id for case_id, measures in found.items() for m in measures)
