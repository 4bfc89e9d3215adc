"""Sharing the office's published cases with other municipalities (issue #15, kb/sharing.py):
the export in the import format, the 公表 filter, the personal-data stop, the settings,
the reviewers' page and the round trip into another office's knowledge base."""

import csv
import io
import json
import shutil

import pytest
from werkzeug.datastructures import MultiDict

from kb import imports, reports, search, sharing, workflow
from kb.db import DATABASE_FILE, get_db
from kb.exceptions import PersonalDataInExport
from tests.conftest import add_user, csrf_token, login, make_app, post_form
from tests.reporting import form_version, incident_form, near_miss_form

OFFICE = {"MUNICIPALITY_CODE": "131016", "MUNICIPALITY_NAME": "千代田区", "PREFECTURE": "東京都"}
DISCLOSURE_URL = "https://www.city.example.lg.jp/kurashi/0000123456.html"


@pytest.fixture
def office_app(data_dir):
    return make_app(data_dir, **OFFICE)


@pytest.fixture
def people(office_app):
    return {
        "reporter": add_user(office_app, "reporter", "staff"),
        "manager": add_user(office_app, "manager", "manager"),
        "reviewer": add_user(office_app, "reviewer", "reviewer", department="soumu-gyousei-joho"),
        "admin": add_user(office_app, "admin", "admin", department="kikaku-johoseisaku"),
    }


def file_case(app, people, *, kind="incident", until="published", disclosure="individual",
              disclosure_url=DISCLOSURE_URL, disclosed_on="2026-10-20", **overrides) -> int:
    """A report filed and taken through the real workflow to ``until``, with its 公表
    record (incidents that get that far)."""
    form = incident_form(**overrides) if kind == "incident" else near_miss_form(**overrides)
    with app.app_context():
        db = get_db()
        report = reports.report_from_form(MultiDict(form), kind)
        case_id = reports.save_report(db, people["reporter"], report)
        steps = ("submitted", "approved", "published")
        if until in steps:
            workflow.submit_report(db, people["reporter"], case_id)
        if until in steps[1:]:
            workflow.approve_report(db, people["manager"], case_id)
        if until == "published":
            workflow.publish_report(db, people["reviewer"], case_id)
        if kind == "incident" and until != "draft" and disclosure is not None:
            workflow.update_statutory_record(
                db, people["reviewer"], case_id, prelim_reported_on="", final_reported_on="",
                disclosure=disclosure,
                disclosure_reason="本人が特定されるおそれがあるため" if disclosure == "none" else "",
                disclosure_url=disclosure_url if disclosure != "none" else "",
                disclosed_on=disclosed_on if disclosure != "none" else "")
        return case_id


@pytest.fixture
def out_dir(tmp_path):
    """A folder of its own for the exported files (tmp_path holds the data folder)."""
    folder = tmp_path / "exports"
    folder.mkdir()
    return folder


def export(app, path, *args):
    return app.test_cli_runner().invoke(args=["export-cases", str(path), *args])


def read_jsonl(path) -> dict[str, dict]:
    return {record["id"]: record for record in
            (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())}


def test_only_published_incidents_with_a_public_disclosure_are_exported(office_app, people, out_dir):
    individual = file_case(office_app, people, title="通知書の封入誤り（個別公表）")
    batch = file_case(office_app, people, title="FAXの誤送信（一括公表）", disclosure="batch",
                      disclosure_url="", task="fax", incident_type="fax_missend", channel="FAX")
    not_public = file_case(office_app, people, title="非公表の事故", disclosure="none")
    undecided = file_case(office_app, people, title="公表未定の事故", disclosure=None)
    in_review = file_case(office_app, people, title="承認済みで未公開の事故", until="approved")
    draft = file_case(office_app, people, title="下書きの事故", until="draft")
    near_miss = file_case(office_app, people, kind="near_miss")
    withdrawn = file_case(office_app, people, title="取り下げた事故")
    with office_app.app_context():
        db = get_db()
        db.execute("UPDATE cases SET status = 'withdrawn' WHERE case_id = ?", [withdrawn])
        db.conn.commit()
        external = db.execute("SELECT count(*) FROM cases WHERE origin = 'external'").fetchone()[0]
    assert external > 0

    out = out_dir / "shared.jsonl"
    result = export(office_app, out)
    assert result.exit_code == 0, result.output
    assert "2件の事例を" in result.output
    records = read_jsonl(out)
    assert sorted(records) == [f"13101-{individual:06d}", f"13101-{batch:06d}"]
    for case_id in (not_public, undecided, in_review, draft, near_miss, withdrawn):
        assert f"13101-{case_id:06d}" not in records
    assert all(record["municipality"] == "千代田区" for record in records.values())


def test_a_record_holds_the_shared_fields_and_nothing_of_the_reporter_or_comments(office_app, people, out_dir):
    case_id = file_case(office_app, people)
    with office_app.app_context():
        db = get_db()
        workflow.add_comment(db, people["reviewer"], case_id, "確報の文面は総務課と調整済みです。")
        db.execute("UPDATE users SET display_name = '報告者 花子' WHERE user_id = ?",
                   [people["reporter"].user_id])
        db.conn.commit()
    out = out_dir / "shared.jsonl"
    assert export(office_app, out).exit_code == 0
    text = out.read_text(encoding="utf-8")
    record = json.loads(text)
    assert record == {
        "id": f"13101-{case_id:06d}", "title": "通知書の封入誤りにより別人の通知を送付",
        "municipality": "千代田区", "prefecture": "東京都", "occurred_on": "2026-10-01",
        "published_on": "2026-10-20", "incident_type": "postal_misdelivery", "task": "postal",
        "channel": "郵送", "department": "戸籍住民課",
        "summary": "介護保険料の通知書を封入する際、2人分を1つの封筒に入れて発送した。",
        "affected_count": 2, "data_items": ["氏名", "住所", "保険料額"],
        "causes": ["2人分の通知が重なって1通に見えた。", "封入前に枚数を数える手順がなかった。",
                   "根本原因：封入物と宛名の照合が手作業の目視だけに頼っていた。"],
        "countermeasures": ["封入封緘機の重量チェックで枚数違いを止める。"],
        "lesson": "封入物の照合は人の目ではなく仕組みで行う。",
        "source_url": DISCLOSURE_URL, "source_title": "千代田区の個別公表",
    }
    for never in ("reporter", "報告者", "花子", "確報の文面", "受け取った区民から電話",
                  "当日中に訪問", "followed_but_missed", "2027-03-31", "reviewer"):
        assert never not in text


def test_csv_is_utf8_with_bom_and_japanese_headers_the_importer_reads(office_app, people, out_dir):
    case_id = file_case(office_app, people, summary="- 封入前に枚数を数えなかった。\n- 発送前の照合もなかった。")
    out = out_dir / "shared.csv"
    result = export(office_app, out)  # the format follows the file name
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows[0][:4] == ["ID", "件名", "自治体名", "都道府県"]
    assert "教訓" in rows[0] and "出典" in rows[0]
    assert all(imports.CSV_HEADERS[imports.fold_header(name)] for name in rows[0])
    row = dict(zip(rows[0], rows[1]))
    assert row["ID"] == f"13101-{case_id:06d}"
    assert imports.incident_type_code(row["種別"]) == "postal_misdelivery" != row["種別"]
    # A cell a spreadsheet would run as a formula is quoted, and the importer unquotes it.
    assert row["概要"].startswith("'- 封入前に")
    records = imports.read_records(data, "shared.csv")
    clean, errors = imports.check_record(records[0][1])
    assert errors == {}
    assert clean["summary"] == "- 封入前に枚数を数えなかった。\n- 発送前の照合もなかった。"
    assert clean["causes"][-1] == "根本原因：封入物と宛名の照合が手作業の目視だけに頼っていた。"
    assert clean["lesson"] == "封入物の照合は人の目ではなく仕組みで行う。"


def test_csv_in_cp932_reads_back_with_its_japanese_headers(office_app, people, out_dir):
    file_case(office_app, people, lesson="封入物の照合は〜人の目ではなく仕組みで行う。")
    out = out_dir / "shared-sjis.csv"
    result = export(office_app, out, "--format", "csv", "--encoding", "cp932")
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    header = data.decode("cp932").splitlines()[0]
    assert header.startswith("ID,件名,自治体名,都道府県")
    (line_no, record), = imports.read_records(data, "shared-sjis.csv")
    clean, errors = imports.check_record(record)
    assert errors == {}
    assert clean["municipality"] == "千代田区" and clean["department"] == "戸籍住民課"
    assert clean["lesson"] == "封入物の照合は～人の目ではなく仕組みで行う。"  # Windows' 〜


def test_text_cp932_cannot_hold_stops_a_cp932_export_and_writes_nothing(office_app, people, out_dir):
    file_case(office_app, people, title="𠮷野町の通知書を封入誤り")
    out = out_dir / "shared.csv"
    result = export(office_app, out, "--encoding", "cp932")
    assert result.exit_code == 1
    assert "CP932" in result.output and "𠮷" in result.output
    assert list(out_dir.iterdir()) == []  # neither the file nor a temporary one


def test_since_keeps_the_cases_published_on_or_after_the_day(office_app, people, out_dir):
    older = file_case(office_app, people, title="10月に公表した事故", disclosed_on="2026-10-05")
    newer = file_case(office_app, people, title="11月に公表した事故", disclosed_on="2026-11-02")
    # Without a 公表日, the day it was published here (today) counts.
    undated = file_case(office_app, people, title="公表日のない事故", disclosed_on="")
    out = out_dir / "since.jsonl"
    result = export(office_app, out, "--since", "2026-11-01")
    assert result.exit_code == 0, result.output
    assert sorted(read_jsonl(out)) == sorted(f"13101-{c:06d}" for c in (newer, undated))
    assert f"13101-{older:06d}" not in read_jsonl(out)
    bad = export(office_app, out_dir / "bad.jsonl", "--since", "2026-02-30")
    assert bad.exit_code == 1 and "YYYY-MM-DD" in bad.output
    assert not (out_dir / "bad.jsonl").exists()


def test_a_phone_number_in_a_published_lesson_stops_the_export_and_nothing_is_written(office_app, people, out_dir):
    clean_case = file_case(office_app, people)
    leaking = file_case(office_app, people, title="窓口での誤交付")
    with office_app.app_context():
        db = get_db()
        # As a case published before the scanner knew this way of writing a number (or
        # edited in the database): the export scans again, whatever publishing checked.
        db.execute("UPDATE cases SET lesson = ? WHERE case_id = ?",
                   ["折り返しは 090 1234 5678 へ、と本人に伝えてしまった。", leaking])
        db.conn.commit()
    out = out_dir / "shared.jsonl"
    out.write_text("the previous export\n", encoding="utf-8")
    result = export(office_app, out)
    assert result.exit_code == 1
    assert f"事例 {leaking}" in result.output and "教訓" in result.output
    assert "090 1234 5678" in result.output
    assert f"事例 {clean_case}" not in result.output
    assert out.read_text(encoding="utf-8") == "the previous export\n"  # not overwritten
    assert sorted(p.name for p in out_dir.iterdir()) == ["shared.jsonl"]  # no temporary left
    with office_app.app_context():
        with pytest.raises(PersonalDataInExport) as found:
            sharing.export_cases(get_db(), people["reviewer"], office_app.config)
    assert [(f["case_id"], f["field"], f["text"]) for f in found.value.findings] == [
        (leaking, "lesson", "090 1234 5678")]


def test_a_finding_the_reviewer_confirmed_as_not_personal_data_does_not_stop_it(office_app, people, out_dir):
    lesson = "区の代表電話 03-3264-2111 への問い合わせは担当課につなぐ。"
    with office_app.app_context():
        db = get_db()
        report = reports.report_from_form(MultiDict(incident_form(lesson=lesson)), "incident")
        case_id = reports.save_report(db, people["reporter"], report)
        workflow.submit_report(db, people["reporter"], case_id, pii_acknowledged=True)
        workflow.approve_report(db, people["manager"], case_id)
        workflow.confirm_not_personal_data(db, people["reviewer"], case_id, "lesson", "03-3264-2111")
        workflow.publish_report(db, people["reviewer"], case_id)
        workflow.update_statutory_record(db, people["reviewer"], case_id, prelim_reported_on="",
                                         final_reported_on="", disclosure="individual",
                                         disclosure_reason="")
    out = out_dir / "shared.jsonl"
    assert export(office_app, out).exit_code == 0
    assert read_jsonl(out)[f"13101-{case_id:06d}"]["lesson"] == lesson


@pytest.mark.parametrize("settings, message", [
    ({"MUNICIPALITY_CODE": ""}, "KB_MUNICIPALITY_CODE"),
    ({"MUNICIPALITY_CODE": "131017"}, "検査数字"),
    ({"MUNICIPALITY_CODE": "1310"}, "数字6桁"),
    ({"MUNICIPALITY_CODE": "991016"}, "01〜47"),
    ({"MUNICIPALITY_NAME": ""}, "KB_MUNICIPALITY_NAME"),
])
def test_missing_or_malformed_settings_stop_the_export_with_a_japanese_message(data_dir, out_dir, settings, message):
    app = make_app(data_dir, **{**OFFICE, **settings})
    out = out_dir / "shared.jsonl"
    result = export(app, out)
    assert result.exit_code == 1
    assert message in result.output and "ファイルは作っていません" in result.output
    assert not out.exists()


@pytest.mark.parametrize("code, digit", [("13101", 6), ("13113", 0), ("13104", 1), ("01100", 2)])
def test_check_digits_of_known_codes(code, digit):
    # 千代田区 131016, 渋谷区 131130, 新宿区 131041, 札幌市 011002
    assert sharing.check_digit(code) == digit
    assert sharing.office_from_settings({**OFFICE, "MUNICIPALITY_CODE": f"{code}{digit}"}).code == code


def test_the_export_never_overwrites_the_database(office_app, people):
    db_file = office_app.config["DATA_DIR"] + "/" + DATABASE_FILE
    before = open(db_file, "rb").read(100)
    result = export(office_app, db_file)
    assert result.exit_code == 1 and "データベース" in result.output
    assert open(db_file, "rb").read(100) == before


def test_the_round_trip_imports_every_case_into_a_fresh_office_and_a_reexport_updates_in_place(
        office_app, people, tmp_path, out_dir, seeded_db_file):
    first = file_case(office_app, people, title="介護保険の通知書を別人に郵送")
    second = file_case(office_app, people, title="ファクス番号の登録誤りで別の事業所に送信",
                       task="fax", incident_type="fax_missend", channel="FAX", disclosure="batch",
                       disclosure_url="", lesson="短縮ダイヤルは登録時に二人で確かめる。")
    other_dir = tmp_path / "other-office"
    other_dir.mkdir()
    shutil.copy(seeded_db_file, other_dir / DATABASE_FILE)
    shutil.copytree(search.index_path(seeded_db_file.parent), search.index_path(other_dir))
    other = make_app(other_dir)
    reader = add_user(other, "other-staff", "staff")

    for name in ("shared.jsonl", "shared.csv"):
        out = out_dir / name
        assert export(office_app, out).exit_code == 0
        result = other.test_cli_runner().invoke(args=["import-cases", str(out)])
        assert result.exit_code == 0, result.output
        exported = (read_jsonl(out) if name.endswith(".jsonl") else
                    {r["id"]: r for r in (imports.check_record(raw)[0]
                                          for _, raw in imports.read_records(out.read_bytes(), name))})
        with other.app_context():
            db = get_db()
            for case_id in (first, second):
                record = exported[f"13101-{case_id:06d}"]
                hits = search.search_cases(search.get_index(other_dir), db, reader,
                                           record["title"]).hits
                found = [h for h in hits if h.get("external_id") == record["id"]]
                assert found, (record["title"], [h.get("title") for h in hits[:5]])
                stored = imports.external_record(db, found[0]["case_id"])
                assert stored["municipality"] == "千代田区" and stored["prefecture"] == "東京都"
                for key in ("title", "occurred_on", "published_on", "incident_type", "task",
                            "channel", "department", "summary", "lesson", "source_url",
                            "source_title"):
                    assert stored[key] == (record[key] or ""), key
                for key in ("data_items", "causes", "countermeasures"):
                    assert stored[key].split("\n") == list(record[key]), key
                assert str(stored["affected_count"]) == str(record["affected_count"])
        if name.endswith(".csv"):
            assert "変更はありません" in result.output  # the same cases as the JSON Lines

    # An edit on this side (a 公表 URL recorded later), exported and imported again,
    # updates the other office's case in place.
    with office_app.app_context():
        db = get_db()
        workflow.update_statutory_record(db, people["reviewer"], second, prelim_reported_on="",
                                         final_reported_on="", disclosure="batch",
                                         disclosure_reason="",
                                         disclosure_url="https://www.city.example.lg.jp/ichiran.html")
    out = out_dir / "again.jsonl"
    assert export(office_app, out).exit_code == 0
    result = other.test_cli_runner().invoke(args=["import-cases", str(out)])
    assert result.exit_code == 0, result.output
    assert "新規 0件、更新 1件、変更なし 1件" in result.output
    with other.app_context():
        rows = get_db().execute(
            "SELECT external_id, source_url FROM cases WHERE external_id LIKE '13101-%'"
            " ORDER BY external_id").fetchall()
    assert [tuple(r) for r in rows] == [
        (f"13101-{first:06d}", DISCLOSURE_URL),
        (f"13101-{second:06d}", "https://www.city.example.lg.jp/ichiran.html")]


# --- the reviewers' page -------------------------------------------------------------------

def test_the_page_is_for_reviewers_only(office_app, people):
    client = office_app.test_client()
    for login_id in ("reporter", "manager", "admin"):
        login(client, login_id)
        assert client.get("/sharing/export").status_code == 403
        token = csrf_token(client.get("/").get_data(as_text=True))
        response = client.post("/sharing/export", data={"csrf_token": token, "format": "jsonl"})
        assert response.status_code == 403
        client.post("/logout", data={"csrf_token": token})
    with office_app.app_context():
        assert get_db().execute("SELECT count(*) FROM audit_log WHERE action LIKE 'cases_export%'"
                                ).fetchone()[0] == 0


def test_a_reviewer_downloads_the_csv_and_the_export_is_audited(office_app, people):
    case_id = file_case(office_app, people)
    client = office_app.test_client()
    login(client, "reviewer")
    page = client.get("/sharing/export").get_data(as_text=True)
    assert "千代田区" in page and "131" in page and "1件" in page
    response = post_form(client, "/sharing/export", {"format": "csv", "encoding": "cp932"})
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith('attachment; filename="cases-13101-')
    assert "shift_jis" in response.headers["Content-Type"]
    assert response.data.decode("cp932").startswith("ID,件名,自治体名")
    with office_app.app_context():
        entry = get_db().execute("SELECT actor, action, detail FROM audit_log"
                                 " WHERE action = 'cases_export'").fetchone()
    assert entry[0] == "reviewer"
    assert json.loads(entry[2]) == {"format": "csv", "encoding": "cp932", "since": "",
                                         "count": 1, "case_ids": [case_id]}


def test_the_page_lists_the_personal_data_findings_and_sends_no_file(office_app, people):
    leaking = file_case(office_app, people)
    with office_app.app_context():
        db = get_db()
        db.execute("UPDATE cases SET summary = summary || ' 連絡先 yamada@example.jp' "
                   "WHERE case_id = ?", [leaking])
        db.conn.commit()
    client = office_app.test_client()
    login(client, "reviewer")
    response = post_form(client, "/sharing/export", {"format": "jsonl"})
    assert response.status_code == 422
    assert "Content-Disposition" not in response.headers
    html = response.get_data(as_text=True)
    assert 'id="pii-findings"' in html and "yamada@example.jp" in html and "概要" in html
    assert f"/cases/{leaking}" in html
    with office_app.app_context():
        actions = [r[0] for r in get_db().execute(
            "SELECT action FROM audit_log WHERE action LIKE 'cases_export%'")]
    assert actions == ["cases_export_refused"]


def test_the_page_explains_missing_settings(data_dir, people):
    app = make_app(data_dir)  # no municipality settings
    client = app.test_client()
    login(client, "reviewer")
    html = client.get("/sharing/export").get_data(as_text=True)
    assert 'id="settings-errors"' in html and "KB_MUNICIPALITY_CODE" in html
    response = post_form(client, "/sharing/export", {"format": "jsonl"})
    assert response.status_code == 422
    assert "KB_MUNICIPALITY_NAME" in response.get_data(as_text=True)


# --- the 公表 record ----------------------------------------------------------------------------

def test_the_disclosure_form_records_the_public_url_and_refuses_a_bad_one_beside_the_field(
        office_app, people):
    case_id = file_case(office_app, people, disclosure=None)
    client = office_app.test_client()
    login(client, "reviewer")
    action = f"/reports/{case_id}/statutory"
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    fields = {"csrf_token": csrf_token(page), "version": form_version(page, action),
              "prelim_reported_on": "", "final_reported_on": "", "disclosure": "individual",
              "disclosure_reason": "", "disclosed_on": "2026-10-20"}
    refused = client.post(action, data={**fields, "disclosure_url": "javascript:alert(1)"})
    assert refused.status_code == 422
    html = refused.get_data(as_text=True)
    assert 'id="disclosure_url-errors"' in html and "http:// か https://" in html
    assert 'value="javascript:alert(1)"' in html  # what was typed is kept
    too_long = client.post(action, data={**fields, "disclosure_url": "https://example.jp/" + "a" * 490})
    assert too_long.status_code == 422 and "500文字以内" in too_long.get_data(as_text=True)
    with office_app.app_context():
        row = get_db().execute("SELECT disclosure, disclosure_url FROM cases WHERE case_id = ?",
                               [case_id]).fetchone()
    assert tuple(row) == (None, None)
    saved = client.post(action, data={**fields, "disclosure_url": DISCLOSURE_URL})
    assert saved.status_code == 302
    html = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert f'href="{DISCLOSURE_URL}"' in html and "公表した日" in html
    # The form is version-checked like the rest of the 公表 record: the old page is stale.
    stale = client.post(action, data={**fields, "disclosure_url": "https://example.jp/old"})
    assert stale.status_code == 409
