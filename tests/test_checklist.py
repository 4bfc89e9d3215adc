"""The checklist: versions from YAML, links that survive them, item pages, 改訂候補, cards."""

import re
from pathlib import Path

import pytest

from kb import checklist
from kb.db import get_db, transaction
from kb.exceptions import Forbidden, Invalid
from tests.conftest import csrf_token
from tests.reporting import file_report, insert_undated_near_miss, near_miss_form
from tests.reporting import form_version

SEED = Path(__file__).resolve().parent.parent / "data" / "seed" / "checklist.yaml"


def new_version(tmp_path, *, drop="3-5", version="2025"):
    """The seed checklist as a new version without one item."""
    lines, skip = [], False
    for line in SEED.read_text(encoding="utf-8").splitlines():
        if line.startswith("version:"):
            line = f'version: "{version}"'
        if line.strip() == f'- code: "{drop}"':
            skip = True
            continue
        if skip and line.strip().startswith("- code:"):
            skip = False
        if not skip:
            lines.append(line)
    path = tmp_path / "checklist-new.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def first_external_countermeasure(db):
    return db.execute(
        "SELECT m.countermeasure_id, m.case_id FROM countermeasures m JOIN cases c USING (case_id)"
        " WHERE c.external_id = 'ext-0009' ORDER BY position LIMIT 1").fetchone()


def test_a_new_version_keeps_links_to_an_item_it_dropped(db, make_user, tmp_path):
    reviewer = make_user("checker", "reviewer", department="soumu-gyousei-joho")
    countermeasure_id, case_id = first_external_countermeasure(db)
    checklist.set_countermeasure_items(db, reviewer, countermeasure_id, ["3-5", "3-3"])
    assert checklist.load_checklist(db, new_version(tmp_path))
    assert checklist.current_version(db)["version"] == "2025"
    assert "3-5" not in checklist.current_codes(db)
    links = [r[0] for r in db.execute(
        "SELECT item_code FROM countermeasure_checklist_items WHERE countermeasure_id = ? ORDER BY item_code",
        [countermeasure_id])]
    assert links == ["3-3", "3-5"]
    item = checklist.get_item(db, "3-5")
    assert item["removed"] and item["version"] == "2024"
    assert case_id in [c["case_id"] for c in checklist.item_cases(db, "3-5")["cases"]]


def test_loading_the_same_version_again_changes_nothing(db):
    assert checklist.load_checklist(db, SEED) is False


@pytest.mark.parametrize("mutate, line, message", [
    (lambda t: t.replace('- code: "3-3"', '- code: "3-2"', 1), None, "項目コード「3-2」が重複しています"),
    (lambda t: t.replace("    title: FAXの送信\n", "\n", 1) if "    title: FAXの送信\n" in t
     else t.replace("    title: ", "    titel: ", 1), None, "title（見出し）がありません"),
    (lambda t: t.replace("tasks: [fax]", "tasks: [teleport]", 1), None, "決められた作業にありません"),
    (lambda t: t + "  - code: [unclosed\n", None, "YAMLとして読めません"),
])
def test_a_broken_checklist_is_refused_with_the_offending_line(db, tmp_path, mutate, line, message):
    path = tmp_path / "bad.yaml"
    path.write_text(mutate(SEED.read_text(encoding="utf-8")).replace('version: "2024"', 'version: "2099"'),
                    encoding="utf-8")
    with pytest.raises(Invalid) as caught:
        checklist.load_checklist(db, path)
    assert any(key.endswith("行目") for key in caught.value.errors)
    assert message in " ".join(m for ms in caught.value.errors.values() for m in ms)
    assert checklist.current_version(db)["version"] == "2024"


def test_import_checklist_command(app, tmp_path):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["import-checklist", str(new_version(tmp_path))])
    assert result.exit_code == 0 and "loaded and made current" in result.output
    again = runner.invoke(args=["import-checklist", str(new_version(tmp_path))])
    assert "already loaded" in again.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nsections: []\n", encoding="utf-8")
    result = runner.invoke(args=["import-checklist", str(bad)])
    assert result.exit_code == 1 and "sections" in result.output


@pytest.mark.parametrize("nested, line", [
    ("    title: " + "[" * 200_000, "5行目"),
    ("    title: t\n    items:\n      " + "- " * 5_000 + "x", "7行目"),
], ids=["flow", "block"])
def test_import_checklist_refuses_deeply_nested_yaml_with_its_line_and_writes_nothing(app, tmp_path, nested, line):
    path = tmp_path / "deep.yaml"
    path.write_text('version: "2099"\ntitle: 深い\nsections:\n  - code: "1"\n' + nested + "\n", encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["import-checklist", str(path)])
    assert result.exit_code == 1 and not isinstance(result.exception, RecursionError)
    assert f"{line}: 入れ子が深すぎます" in result.output and "Traceback" not in result.output
    assert "チェックリストを読み込みませんでした" in result.output
    with app.app_context():
        assert checklist.current_version(get_db())["version"] == "2024"


def test_links_are_for_reviewers_and_the_departments_managers(db, make_user):
    staff = make_user("taro", "staff")
    manager = make_user("boss", "manager")
    countermeasure_id, _ = first_external_countermeasure(db)
    with pytest.raises(Forbidden):
        checklist.set_countermeasure_items(db, staff, countermeasure_id, ["3-3"])
    with pytest.raises(Forbidden):  # an external case is the reviewers' to link
        checklist.set_countermeasure_items(db, manager, countermeasure_id, ["3-3"])
    reviewer = make_user("checker", "reviewer", department="soumu-gyousei-joho")
    with pytest.raises(Invalid):
        checklist.set_countermeasure_items(db, reviewer, countermeasure_id, ["99-9"])


def test_overview_counts_cases_per_item_and_the_item_page_lists_them(client, signed_in, app):
    reviewer = signed_in("reviewer", department="soumu-gyousei-joho")
    with app.app_context():
        db = get_db()
        countermeasure_id, case_id = first_external_countermeasure(db)
        checklist.set_countermeasure_items(db, reviewer, countermeasure_id, ["3-3"])
        checklist.set_case_items(db, reviewer, case_id, ["3-1"])
    html = client.get("/checklist").get_data(as_text=True)
    item = html.split('id="item-3-3"', 1)[1].split("</li>", 1)[0]
    assert "事例 1<br>対策 1" in item
    page = client.get("/checklist/items/3-3").get_data(as_text=True)
    assert "この項目に結び付いた事例（1件）" in page
    assert f'href="/cases/{case_id}"' in page


def test_an_undated_near_miss_on_an_item_page_shows_its_filing_day(client, signed_in, app):
    signed_in("staff")
    with app.app_context():
        db = get_db()
        case_id = insert_undated_near_miss(db)
        with transaction(db):
            db["case_checklist_items"].insert({"case_id": case_id, "item_code": "3-3",
                                               "created_at": "2026-03-02T00:00:00+00:00"})
    page = client.get("/checklist/items/3-3").get_data(as_text=True)
    assert "登録日 2026年3月1日" in page


def test_links_set_from_the_case_page(client, signed_in, app):
    signed_in("reviewer", department="soumu-gyousei-joho")
    with app.app_context():
        countermeasure_id, case_id = first_external_countermeasure(get_db())
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    token, action = csrf_token(page), f"/checklist/links/countermeasure/{countermeasure_id}"
    response = client.post(action, data={"csrf_token": token, "case_id": case_id,
                                         "item_codes": "3-3、3-4",
                                         "version": form_version(page, action)})
    assert response.status_code == 302
    html = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert 'href="/checklist/items/3-3"' in html and 'href="/checklist/items/3-4"' in html
    response = client.post(action, data={"csrf_token": token, "case_id": case_id, "item_codes": "0-0",
                                         "version": form_version(html, action)})
    assert "チェックリストにない項目コードです：0-0" in client.get(f"/cases/{case_id}").get_data(as_text=True)


def test_revision_candidates_for_reviewers_only(client, signed_in, app):
    signed_in("staff")
    assert client.get("/checklist/revision").status_code == 403


def test_revision_candidates_list_unlinked_cases_by_task(client, signed_in):
    signed_in("reviewer", department="soumu-gyousei-joho")
    html = client.get("/checklist/revision").get_data(as_text=True)
    assert "FAX送信（13件）" in html
    assert "項目に未結び付け" in html


def test_task_card_has_the_items_and_a_recent_case(client, signed_in):
    signed_in("staff")
    html = client.get("/checklist/card?task=fax").get_data(as_text=True)
    assert "FAX送信の前に" in html
    assert html.count('<li><span class="item-code">') == 5
    assert "実際にあったこと" in html
    assert "task-card-a5" in client.get("/checklist/card?task=fax&size=a5").get_data(as_text=True)
    chooser = client.get("/checklist/card").get_data(as_text=True)
    assert "作業カードを印刷する" in chooser


def test_department_card(client, signed_in, app):
    signed_in("staff")
    with app.app_context():
        department_id = get_db().execute("SELECT department_id FROM departments WHERE code = 'kumin-koseki'").fetchone()[0]
    html = client.get(f"/checklist/card?department={department_id}").get_data(as_text=True)
    assert "戸籍住民課の前に" in html
    assert client.get("/checklist/card?department=99999").status_code == 404


def card_contents(html: str) -> tuple[list[str], str]:
    """The item codes a card lists and its example line."""
    codes = re.findall(r'<span class="item-code">([^<]+)</span>', html)
    return codes, re.findall(r'<p class="task-card-example">.*?</p>', html)


def test_a_department_card_does_not_change_when_someone_there_files_an_unpublished_report(
        client, signed_in, app):
    signed_in("staff", department="kodomo-hoiku")
    with app.app_context():
        department_id = get_db().execute(
            "SELECT department_id FROM departments WHERE code = 'kodomo-hoiku'").fetchone()[0]
    url = f"/checklist/card?department={department_id}"
    before = card_contents(client.get(url).get_data(as_text=True))
    file_report(client, "near_miss", near_miss_form(task="fax"))
    file_report(client, "near_miss", near_miss_form(task="email", checklist_items=[]), submit=True)
    assert card_contents(client.get(url).get_data(as_text=True)) == before
