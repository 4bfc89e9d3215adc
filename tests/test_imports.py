"""Importing cases of other municipalities: JSON Lines and CSV as Excel saves it."""

import json
from pathlib import Path

import pytest

from kb import checklist, imports, search, users
from kb.db import transaction
from kb.exceptions import Invalid

SHARED_JSONL = Path(__file__).resolve().parent.parent / "data" / "seed" / "external_cases.jsonl"

RECORD = {
    "id": "ext-9001", "municipality": "テスト市", "prefecture": "東京都",
    "occurred_on": "2025-04-01", "published_on": "2025-04", "title": "通知を誤った宛先に送付",
    "incident_type": "postal_misdelivery", "channel": "郵送", "department": "税務課",
    "summary": "封入時に別の人の通知を同封した。", "affected_count": 2,
    "data_items": ["氏名", "住所"], "causes": ["封入物の照合をしなかった。"],
    "countermeasures": ["封入時に二人で照合する。", "封入封緘機を使う。"],
    "source_url": "https://example.jp/news/1", "source_title": "お詫び",
}
CSV_JAPANESE = (
    "ID,件名,自治体名,都道府県,発生日,公表日,種別,経路,担当課,概要,人数,漏えい項目,原因,再発防止策,出典\r\n"
    'csv-0001,介護認定の通知を別人に郵送,テスト町,千葉県,2025/6/3,2025年6月10日,誤送付,郵送,介護保険課,'
    '"封入時に2人分を1通に入れた。","1,024","氏名・住所・被保険者番号","封入物の照合をしなかった。\n照合の手順がなかった。",'
    '"封入封緘機を使う。\n宛名を読み合わせる。",https://example.jp/csv/1\r\n'
    "csv-0002,ＦＡＸを別の事業所に送信,テスト町,千葉県,2025-07-01,,FAX誤送信,FAX,福祉課,"
    "短縮ダイヤルの登録誤り。,3,氏名、病歴,登録を点検していなかった。,送信前に読み上げる。,https://example.jp/csv/2\r\n"
)
CSV_ENGLISH = (
    "id,title,municipality,incident_type,summary,source_url,countermeasures\n"
    "en-1,USBメモリを紛失,テスト村,media_loss,庁外で紛失した。,https://example.jp/en/1,持出し簿を付ける。\n"
)


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def jsonl(path, records):
    return write(path, "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")


def snapshot(db):
    return (db.execute("SELECT * FROM cases ORDER BY case_id").fetchall(),
            db.execute("SELECT * FROM countermeasures ORDER BY countermeasure_id").fetchall())


def index_snapshot(app):
    with search.get_index(app.config["DATA_DIR"]).searcher() as s:
        return sorted((f["case_id"], f["stamp"]) for f in s.all_stored_fields())


def test_the_shared_jsonl_reimported_changes_nothing(db, app):
    result = imports.import_external_cases(db, SHARED_JSONL)
    assert (result.new, result.updated, result.unchanged) == (0, 0, 180)
    assert not result.changed


def test_new_record_is_published_indexed_and_found_by_search(db, app, tmp_path):
    result = imports.import_external_cases(db, jsonl(tmp_path / "a.jsonl", [RECORD]))
    assert (result.new, result.updated, result.unchanged) == (1, 0, 0)
    case = db.execute_returning_dicts("SELECT * FROM cases WHERE external_id = 'ext-9001'")[0]
    assert case["status"] == "published" and case["task"] == "postal"
    hits = search.search_cases(search.get_index(app.config["DATA_DIR"]), db, users.READER, "テスト市 宛先")
    assert case["case_id"] in [hit["case_id"] for hit in hits.hits]


def test_cp932_csv_with_japanese_headers(db, tmp_path):
    path = write(tmp_path / "excel.csv", CSV_JAPANESE, "cp932")
    result = imports.import_external_cases(db, path)
    assert result.new == 2
    row = db.execute_returning_dicts("SELECT * FROM cases WHERE external_id = 'csv-0001'")[0]
    assert row["occurred_on"] == "2025-06-03" and row["published_on"] == "2025-06-10"
    assert row["incident_type"] == "postal_misdelivery" and row["affected_count"] == 1024
    assert json.loads(row["data_items"]) == ["氏名", "住所", "被保険者番号"]
    assert json.loads(row["causes"]) == ["封入物の照合をしなかった。", "照合の手順がなかった。"]
    texts = [r[0] for r in db.execute(
        "SELECT text FROM countermeasures WHERE case_id = ? ORDER BY position", [row["case_id"]])]
    assert texts == ["封入封緘機を使う。", "宛名を読み合わせる。"]
    fax = db.execute_returning_dicts("SELECT * FROM cases WHERE external_id = 'csv-0002'")[0]
    assert fax["incident_type"] == "fax_missend" and fax["task"] == "fax"
    assert json.loads(fax["data_items"]) == ["氏名", "病歴"]


def test_utf8_bom_csv_with_english_headers(db, tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + CSV_ENGLISH.encode("utf-8"))
    assert imports.import_external_cases(db, path).new == 1
    assert db.execute("SELECT incident_type FROM cases WHERE external_id = 'en-1'").fetchone()[0] == "media_loss"


def test_reimport_is_a_no_op_and_an_edit_is_an_update_in_place(db, tmp_path):
    path = write(tmp_path / "excel.csv", CSV_JAPANESE, "cp932")
    imports.import_external_cases(db, path)
    before = snapshot(db)
    again = imports.import_external_cases(db, path)
    assert (again.new, again.updated, again.unchanged) == (0, 0, 2)
    assert snapshot(db) == before
    changed = write(tmp_path / "edited.csv", CSV_JAPANESE.replace("短縮ダイヤルの登録誤り。", "短縮ダイヤルの登録を誤っていた。"), "cp932")
    result = imports.import_external_cases(db, changed)
    assert (result.new, result.updated) == (0, 1)
    assert result.changes[0]["fields"] == ["summary"]


def test_records_without_id_are_matched_by_source_url(db, tmp_path):
    record = dict(RECORD)
    del record["id"]
    first = imports.import_external_cases(db, jsonl(tmp_path / "a.jsonl", [record]))
    second = imports.import_external_cases(db, jsonl(tmp_path / "b.jsonl", [dict(record, title="件名を訂正")]))
    assert (first.new, second.new, second.updated) == (1, 0, 1)
    assert db.execute("SELECT count(*) FROM cases WHERE source_url = ?", [RECORD["source_url"]]).fetchone()[0] == 1


def test_likely_duplicates_are_reported_not_merged(db, tmp_path):
    seed = db.execute_returning_dicts("SELECT * FROM cases WHERE external_id = 'ext-0001'")[0]
    near = dict(RECORD, id="ext-9002", municipality=seed["municipality"], title=seed["title"] + "（続報）",
                occurred_on=seed["occurred_on"], source_url="https://example.jp/other")
    result = imports.import_external_cases(db, jsonl(tmp_path / "dup.jsonl", [near]))
    assert result.new == 1
    assert [d["other_external_id"] for d in result.duplicates] == ["ext-0001"]


def test_dry_run_reports_and_writes_nothing(db, app, tmp_path):
    before, index_before = snapshot(db), index_snapshot(app)
    result = imports.import_external_cases(db, jsonl(tmp_path / "a.jsonl", [RECORD]), dry_run=True)
    assert result.new == 1 and result.dry_run
    assert snapshot(db) == before and index_snapshot(app) == index_before


BROKEN = [
    ("broken.jsonl", json.dumps(RECORD) + "\n{not json\n", "utf-8", "2行目", "JSONとして読めません"),
    ("missing.jsonl", json.dumps(dict(RECORD, title="")), "utf-8", "1行目 件名", "件名は必須です"),
    ("type.jsonl", json.dumps(dict(RECORD, incident_type="rumour")), "utf-8", "1行目 種別", "決められた種別のどれでもありません"),
    ("task.jsonl", json.dumps(dict(RECORD, task="teleport")), "utf-8", "1行目 作業", "決められた作業のどれでもありません"),
    ("date.jsonl", json.dumps(dict(RECORD, occurred_on="2025-02-30")), "utf-8", "1行目 発生日", "存在する日付"),
    ("url.jsonl", json.dumps(dict(RECORD, source_url="javascript:alert(1)")), "utf-8", "1行目 出典", "http:// か https://"),
    ("count.jsonl", json.dumps(dict(RECORD, affected_count=-3)), "utf-8", "1行目 人数", "0以上の整数"),
    ("noid.jsonl", json.dumps({k: v for k, v in RECORD.items() if k not in ("id", "source_url")}), "utf-8", "1行目 ID", "どちらかが必要"),
    ("empty.csv", "", "utf-8", "ファイル", "ファイルが空です"),
    ("noheader.csv", "a,b,c\n1,2,3\n", "utf-8", "1行目", "見出し行に「件名」"),
    ("dup.jsonl", json.dumps(RECORD) + "\n" + json.dumps(RECORD), "utf-8", "2行目 ID", "1行目と同じ事例"),
]


@pytest.mark.parametrize("name, text, encoding, key, message", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_files_are_refused_with_their_message_and_change_nothing(db, app, tmp_path, name, text, encoding, key, message):
    before, index_before = snapshot(db), index_snapshot(app)
    good = json.dumps(dict(RECORD, id="ext-9100", source_url="https://example.jp/9100"))
    # A good record first: one bad record among good ones still stops the whole file.
    standalone = not name.endswith(".jsonl") or name in ("broken.jsonl", "dup.jsonl")
    path = write(tmp_path / name, text if standalone else good + "\n" + text, encoding)
    if name.endswith(".jsonl") and name not in ("broken.jsonl", "dup.jsonl"):
        key = key.replace("1行目", "2行目")
    with pytest.raises(Invalid) as caught:
        imports.import_external_cases(db, path)
    assert key in caught.value.errors, caught.value.errors
    assert message in " ".join(caught.value.errors[key])
    assert snapshot(db) == before and index_snapshot(app) == index_before


def test_a_file_in_neither_utf8_nor_cp932_is_refused(db, tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("件名\n".encode("utf-16"))
    with pytest.raises(Invalid) as caught:
        imports.import_external_cases(db, path)
    assert "文字コードを読み取れません" in caught.value.errors["ファイル"][0]


def test_a_50_mb_file_is_refused_before_it_is_read(db, tmp_path):
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as handle:
        handle.truncate(50 * 2**20)
    with pytest.raises(Invalid) as caught:
        imports.import_external_cases(db, path)
    assert "ファイルが大きすぎます（50 MB）" in caught.value.errors["ファイル"][0]


def test_import_cases_command_reports_and_exits_non_zero_on_errors(app, tmp_path):
    runner = app.test_cli_runner()
    good = write(tmp_path / "excel.csv", CSV_JAPANESE, "cp932")
    result = runner.invoke(args=["import-cases", str(good), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "（試行）新規 2件、更新 0件、変更なし 0件" in result.output
    result = runner.invoke(args=["import-cases", str(good)])
    assert "新規 2件" in result.output
    again = runner.invoke(args=["import-cases", str(good)])
    assert "変更はありません" in again.output
    bad = jsonl(tmp_path / "bad.jsonl", [dict(RECORD, occurred_on="2025-13-01")])
    result = runner.invoke(args=["import-cases", str(bad)])
    assert result.exit_code == 1
    assert "1行目 発生日" in result.output and "データベースは変更していません" in result.output


@pytest.mark.parametrize("value, expected", [
    ("2024-12-05", "2024-12-05"), ("2024/12/5", "2024-12-05"), ("2024年12月5日", "2024-12-05"),
    ("２０２４年１２月", "2024-12"), ("2024-12", "2024-12"), ("", None),
])
def test_dates_in_the_forms_staff_type(value, expected):
    assert imports.parse_date(value) == expected


@pytest.mark.parametrize("value, code", [
    ("誤送付", "postal_misdelivery"), ("メール誤送信", "email_missend"), ("ＦＡＸ誤送信", "fax_missend"),
    ("紛失", "document_loss"), ("誤交付", "counter_misissue"), ("窓口での誤交付", "counter_misissue"),
    ("email_missend", "email_missend"), ("雑談", None),
])
def test_incident_type_names(value, code):
    assert imports.incident_type_code(value) == code


# --- concurrency: a preview or an import does not hold the write lock while it reads ---------

def other_connection(app):
    """A second connection, as another request would have, that waits for no lock."""
    from kb.db import database_path, open_db
    other = open_db(database_path(app.config["DATA_DIR"]))
    other.conn.execute("PRAGMA busy_timeout = 0")
    return other


@pytest.mark.parametrize("dry_run", [True, False], ids=["preview", "import"])
def test_another_connection_saves_while_a_file_is_being_worked_out(db, app, tmp_path, dry_run):
    other, saved = other_connection(app), []

    def save_meanwhile(_):
        if not saved:  # in the middle of the file, while its records are being matched
            with transaction(other):
                other.execute("UPDATE departments SET name = name || '' WHERE department_id = 1")
            saved.append(True)

    records = [dict(RECORD, id=f"ext-95{n:02d}", source_url=f"https://example.jp/95{n:02d}") for n in range(20)]
    result = imports.import_external_cases(db, jsonl(tmp_path / "a.jsonl", records),
                                           dry_run=dry_run, progress=save_meanwhile)
    assert saved and result.new == 20
    stored = db.execute("SELECT count(*) FROM cases WHERE external_id LIKE 'ext-95%'").fetchone()[0]
    assert stored == (0 if dry_run else 20)


def test_a_case_imported_elsewhere_meanwhile_is_matched_not_duplicated(db, app, tmp_path):
    other, path = other_connection(app), jsonl(tmp_path / "a.jsonl", [RECORD])
    other.conn.execute("PRAGMA busy_timeout = 5000")

    def import_meanwhile(_):
        if not other.execute("SELECT 1 FROM cases WHERE external_id = 'ext-9001'").fetchone():
            imports.import_external_cases(other, path)

    result = imports.import_external_cases(db, path, progress=import_meanwhile)
    assert (result.new, result.unchanged) == (0, 1)  # worked out again under the write lock
    assert db.execute("SELECT count(*) FROM cases WHERE external_id = 'ext-9001'").fetchone()[0] == 1


def test_likely_duplicates_within_one_file_name_the_other_line(db, tmp_path):
    second = dict(RECORD, id="ext-9002", source_url="https://example.jp/news/2", title=RECORD["title"] + "（続報）")
    result = imports.import_external_cases(db, jsonl(tmp_path / "a.jsonl", [RECORD, second]), dry_run=True)
    assert [(d["line"], d["other_line"], d["case_id"]) for d in result.duplicates] == [(2, 1, None)]


# --- countermeasures keep their checklist links across a re-import -----------------------------

def countermeasures(db, external_id):
    return db.execute_returning_dicts(
        "SELECT m.countermeasure_id, m.text, group_concat(l.item_code) AS codes FROM countermeasures m"
        " JOIN cases c USING (case_id) LEFT JOIN countermeasure_checklist_items l USING (countermeasure_id)"
        " WHERE c.external_id = ? GROUP BY m.countermeasure_id ORDER BY m.position", [external_id])


def import_linked(db, make_user, tmp_path):
    """RECORD imported, its second countermeasure (封入封緘機) linked to a checklist item."""
    imports.import_external_cases(db, jsonl(tmp_path / "first.jsonl", [RECORD]))
    code = sorted(checklist.current_codes(db))[0]
    reviewer = make_user("linker", "reviewer", department="soumu-gyousei-joho")
    machine = countermeasures(db, "ext-9001")[1]
    checklist.set_countermeasure_items(db, reviewer, machine["countermeasure_id"], [code])
    return machine, code


def test_a_countermeasure_inserted_at_the_top_leaves_links_where_they_were_made(db, make_user, tmp_path):
    machine, code = import_linked(db, make_user, tmp_path)
    moved = dict(RECORD, countermeasures=["宛名を読み合わせる。", "封入時に二人で照合する。", "封入封緘機を使う"])
    result = imports.import_external_cases(db, jsonl(tmp_path / "again.jsonl", [moved]))
    after = countermeasures(db, "ext-9001")
    assert [m["text"] for m in after] == moved["countermeasures"]
    # Matched by text (a missing 。 does not matter): the same row, with its link.
    assert (after[2]["countermeasure_id"], after[2]["codes"]) == (machine["countermeasure_id"], code)
    assert after[0]["codes"] is None and after[1]["codes"] is None
    assert result.updated == 1 and result.lost_links == []


def test_links_of_a_countermeasure_the_file_drops_are_reported_in_the_preview_and_the_result(
        db, app, make_user, tmp_path):
    machine, code = import_linked(db, make_user, tmp_path)
    path = jsonl(tmp_path / "dropped.jsonl", [dict(RECORD, countermeasures=["封入時に二人で照合する。"])])
    before = snapshot(db)
    preview = imports.import_external_cases(db, path, dry_run=True)
    expected = [{"line": 1, "external_id": "ext-9001", "title": RECORD["title"], "case_id": preview.changes[0]["case_id"],
                 "countermeasure": "封入封緘機を使う。", "item_codes": [code]}]
    assert preview.lost_links == expected and snapshot(db) == before
    output = app.test_cli_runner().invoke(args=["import-cases", str(path)]).output
    assert f"再発防止策「封入封緘機を使う。」がファイルにないため、チェックリスト項目 {code} との関連付けが外れました" in output
    assert [m["codes"] for m in countermeasures(db, "ext-9001")] == [None]


# --- hostile files ----------------------------------------------------------------------

@pytest.mark.parametrize("line, message", [
    ("[" * 200_000, "入れ子（[ や {）が深すぎて"),
    ('{"affected_count": ' + "9" * 5000 + "}", "桁数が多すぎる数"),
], ids=["nested", "long-number"])
def test_a_line_json_cannot_parse_safely_is_refused_with_its_line(db, app, tmp_path, line, message):
    before, index_before = snapshot(db), index_snapshot(app)
    path = write(tmp_path / "hostile.jsonl", json.dumps(RECORD) + "\n" + line + "\n")
    with pytest.raises(Invalid) as caught:
        imports.import_external_cases(db, path)
    assert message in caught.value.errors["2行目"][0]
    assert snapshot(db) == before and index_snapshot(app) == index_before


def test_values_in_the_wrong_shape_are_named_not_printed(db, tmp_path):
    nested = [[[["深い"]]]] * 100
    path = jsonl(tmp_path / "shapes.jsonl", [dict(RECORD, incident_type=nested, occurred_on=nested,
                                                  affected_count=10**20)])
    with pytest.raises(Invalid) as caught:
        imports.import_external_cases(db, path)
    errors = caught.value.errors
    assert "種別「文字列でない値」" in errors["1行目 種別"][0]
    assert "発生日「文字列でない値」" in errors["1行目 発生日"][0]
    assert "人数が大きすぎます" in errors["1行目 人数"][0]
