import json

import pytest

from kb import imports
from kb.exceptions import Invalid

RECORD = {
    "id": "ext-9001", "municipality": "テスト市", "prefecture": "東京都",
    "occurred_on": "2025-04-01", "published_on": "2025-04", "title": "通知を誤った宛先に送付",
    "incident_type": "postal_misdelivery", "channel": "郵送", "department": "税務課",
    "summary": "封入時に別の人の通知を同封した。", "affected_count": 2,
    "data_items": ["氏名", "住所"], "causes": ["封入物の照合をしなかった。"],
    "countermeasures": ["封入時に二人で照合する。", "封入封緘機を使う。"],
    "source_url": "https://example.jp/news/1", "source_title": "お詫び",
}


def write_jsonl(path, records):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n",
                    encoding="utf-8")
    return path


def cases_snapshot(db):
    return (db.execute("SELECT * FROM cases ORDER BY case_id").fetchall(),
            db.execute("SELECT * FROM countermeasures ORDER BY countermeasure_id").fetchall())


def test_new_record_is_published_with_its_countermeasures(db, tmp_path):
    result = imports.import_external_cases(db, write_jsonl(tmp_path / "a.jsonl", [RECORD]))
    assert (result["new"], result["updated"], result["unchanged"]) == (1, 0, 0)
    case = db.execute_returning_dicts("SELECT * FROM cases WHERE external_id = 'ext-9001'")[0]
    assert case["status"] == "published" and case["task"] == "postal"
    texts = [r[0] for r in db.execute(
        "SELECT text FROM countermeasures WHERE case_id = ? ORDER BY position", [case["case_id"]])]
    assert texts == RECORD["countermeasures"]


def test_importing_the_same_file_twice_changes_nothing(db, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [RECORD])
    imports.import_external_cases(db, path)
    before = cases_snapshot(db)
    result = imports.import_external_cases(db, path)
    assert (result["new"], result["updated"], result["unchanged"]) == (0, 0, 1)
    assert cases_snapshot(db) == before


def test_changed_record_is_updated_in_place_keeping_countermeasure_rows(db, tmp_path):
    imports.import_external_cases(db, write_jsonl(tmp_path / "a.jsonl", [RECORD]))
    ids_before = [r[0] for r in db.execute(
        "SELECT countermeasure_id FROM countermeasures m JOIN cases c USING (case_id)"
        " WHERE external_id = 'ext-9001' ORDER BY position")]
    changed = dict(RECORD, title="件名を訂正", countermeasures=["封入時に二人で照合する。"])
    result = imports.import_external_cases(db, write_jsonl(tmp_path / "b.jsonl", [changed]))
    assert result["updated"] == 1
    rows = db.execute("SELECT countermeasure_id, text FROM countermeasures m JOIN cases c"
                      " USING (case_id) WHERE external_id = 'ext-9001'").fetchall()
    assert rows == [(ids_before[0], "封入時に二人で照合する。")]
    assert db.execute("SELECT title FROM cases WHERE external_id = 'ext-9001'").fetchone()[0] == "件名を訂正"


@pytest.mark.parametrize("change, key, message", [
    ({"title": ""}, "2行目 title", "title（件名）は必須です。"),
    ({"incident_type": "rumour"}, "2行目 incident_type", "決められた種別のどれでもありません"),
    ({"occurred_on": "2025/04/01"}, "2行目 occurred_on", "YYYY-MM-DD"),
    ({"affected_count": -3}, "2行目 affected_count", "0以上の整数"),
    ({"source_url": "javascript:alert(1)"}, "2行目 source_url", "http:// か https://"),
    ({"causes": "一つの文"}, "2行目 causes", "文字列のリスト"),
])
def test_one_bad_record_writes_nothing_and_names_line_and_field(db, tmp_path, change, key, message):
    good = dict(RECORD, id="ext-9002")
    path = write_jsonl(tmp_path / "bad.jsonl", [good, dict(RECORD, **change)])
    before = cases_snapshot(db)
    with pytest.raises(Invalid) as caught:
        imports.import_external_cases(db, path)
    assert key in caught.value.errors
    assert message in " ".join(caught.value.errors[key])
    assert cases_snapshot(db) == before


def test_broken_json_and_duplicate_ids_are_reported_by_line(db, tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(RECORD) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(Invalid) as caught:
        imports.import_external_cases(db, path)
    assert "2行目" in caught.value.errors
    with pytest.raises(Invalid) as caught:
        imports.import_external_cases(db, write_jsonl(tmp_path / "dup.jsonl", [RECORD, RECORD]))
    assert "1行目と重複" in caught.value.errors["2行目 id"][0]
