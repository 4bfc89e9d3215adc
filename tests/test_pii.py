import json

import pytest

from kb import pii

TRUE_POSITIVES = [
    ("電話番号は03-1234-5678です", "phone", "03-1234-5678"),
    ("携帯09012345678に連絡", "phone", "09012345678"),
    ("ＦＡＸ０３－１２３４－５６７８へ送信", "phone", "０３－１２３４－５６７８"),
    ("(03)1234-5678", "phone", "(03)1234-5678"),
    ("0120-123-456", "phone", "0120-123-456"),
    ("連絡先 taro.yamada@example.jp まで", "email", "taro.yamada@example.jp"),
    ("〒123-4567 東京都", "postal_code", "〒123-4567"),
    ("郵便番号160-0023", "postal_code", "160-0023"),
    ("個人番号123456789012を記載", "individual_number", "123456789012"),
    ("番号 1234 5678 9012", "individual_number", "1234 5678 9012"),
    ("本町三丁目5番地12号に住む", "address", "三丁目5番地12号"),
    ("中央2丁目3番4号", "address", "2丁目3番4号"),
    ("大字上野123番地の4", "address", "123番地の4"),
    ("5番12号の住宅", "address", "5番12号"),
    ("生年月日：昭和45年3月12日", "birth_date", "生年月日：昭和45年3月12日"),
    ("1980年4月1日生まれの男性", "birth_date", "1980年4月1日生まれ"),
    ("H2.5.6生", "birth_date", "H2.5.6生"),
    ("山田太郎様あての通知", "name", "山田太郎様"),
    ("山田 花子さんから電話", "name", "山田 花子さん"),
    ("鈴木氏が対応", "name", "鈴木氏"),
    ("タナカさんに渡した", "name", "タナカさん"),
    ("ゆうと くんの保護者", None, None),  # hiragana given names are not caught: a known gap
    ("佐藤ちゃんの連絡帳", "name", "佐藤ちゃん"),
    # The area code or the local exchange in brackets, full- or half-width, any dash.
    ("（03）1234-5678に電話", "phone", "（03）1234-5678"),
    ("（０３）１２３４－５６７８", "phone", "（０３）１２３４－５６７８"),
    ("(03) 1234 5678", "phone", "(03) 1234 5678"),
    ("(03)12345678", "phone", "(03)12345678"),
    ("(0422)12-3456", "phone", "(0422)12-3456"),
    ("(090)1234-5678", "phone", "(090)1234-5678"),
    ("03(1234)5678まで", "phone", "03(1234)5678"),
    ("０３（１２３４）５６７８", "phone", "０３（１２３４）５６７８"),
    ("03−1234−5678", "phone", "03−1234−5678"),
    ("０３ー１２３４ー５６７８", "phone", "０３ー１２３４ー５６７８"),
    # Spaces or dots between the parts, and the country code.
    ("電話 03 1234 5678 まで", "phone", "03 1234 5678"),
    ("携帯 090 1234 5678", "phone", "090 1234 5678"),
    ("０９０　１２３４　５６７８", "phone", "０９０　１２３４　５６７８"),
    ("080.1234.5678に連絡", "phone", "080.1234.5678"),
    ("+81-90-1234-5678", "phone", "+81-90-1234-5678"),
    ("+81 3 1234 5678に国際電話", "phone", "+81 3 1234 5678"),
    # Block numbers with hyphens, a building and a room, without 丁目/番地.
    ("中央1-2-3 メゾン中央101号室に送付", "address", "1-2-3 メゾン中央101号室"),
    ("本町１－２－３ ハイツ桜 ２０３", "address", "１－２－３ ハイツ桜 ２０３"),
    ("中央１ー２ー３　さくら荘２０１号室", "address", "１ー２ー３　さくら荘２０１号室"),
    ("12-3 コーポ山田 201号室", "address", "12-3 コーポ山田 201号室"),
    ("１２３４－５ 市営住宅３号棟２０５号室", "address", "１２３４－５ 市営住宅３号棟２０５号室"),
    ("5-10-2 グランドメゾン北 B棟 302", "address", "5-10-2 グランドメゾン北 B棟 302"),
    ("本町1-2-3-405に住む", "address", "1-2-3-405"),
]

ORDINARY_TEXT = [
    "2024年12月5日に発生し、翌日に公表した。",
    "1,780件のメールアドレスが見える状態になった。",
    "令和6年4月1日付けで通知を発送した。",
    "職員がFAX番号を誤って入力した。",
    "申請者様への通知を別の封筒に入れた。",
    "利用者の皆様にお詫びした。",
    "お客様から指摘があった。",
    "住民の皆さんへの案内文。",
    "氏名・住所・電話番号が記載されていた。",
    "平成30年度の名簿を紛失した。",
    "様式第3号を使う。",
    "所管課の担当者様と協議した。",
    "午後3時15分に送信した。",
    "USBメモリ1個を紛失した。",
    "保護者様あての通知を誤送付。",
    "同氏は既に退職している。",
    "市長が記者会見で謝罪した。",
    "事業者様に依頼した。",
    "2023-2024年度の調査票。",
    "約10,000円の損害。",
    "お母さんから連絡があった。",
    "本来の届出様式ではなく旧様式で送った。",
    "委託仕様書のとおり封入した。",  # 仕様, 同様, 模様, 様々 are words, not a name with 様
    "前回の会議同様に二人で確認した。",
    "様々な書類を一度に封入した。",
    "窓口の混雑模様を記録した。",
    # Administrative numbers that look like block numbers or phone numbers.
    "個人情報保護法第68条第1項に基づき報告した。",
    "文書番号：総務第12-345号で通知した。",
    "5総行第123-4号のとおり。",
    "2024-12-05に発生し、2024/12/06に公表した。",
    "1-2人で対応した。",
    "チェック項目3-2、3-3を確認する。",
    "3-2 ファクスは2人で確認する。",
    "3-1会議室で研修を行った。",
    "本庁舎5階501号室で説明会を開いた。",
    "第3会議室に集まった。",
    "別表2-3 住宅課 2名が出席した。",
    "様式1-2 住宅使用申請書 10部を配布した。",
    "平成30-31年度 市営住宅 120戸を調査した。",
    "1-2-3 山田ビル 3階の事業所。",
    "資料1-2 の10ページを参照。",
    "30-40代の3人。",
    "令和6年(2024年)4月1日施行。",
    "受付番号(1)1234-5678の書類。",
    "バージョン 0.12.3456 を適用した。",
    "令和6年 4月 1日 0時 15分に発見。",
    "3.14 1234 5678 の計算値。",
]


@pytest.mark.parametrize("text, kind, found", TRUE_POSITIVES)
def test_personal_data_is_found(text, kind, found):
    findings = pii.scan(text)
    if kind is None:
        assert findings == []
        return
    assert [(f.kind, f.text) for f in findings] == [(kind, found)]
    assert text[findings[0].start:findings[0].end] == found


@pytest.mark.parametrize("text", ORDINARY_TEXT)
def test_ordinary_report_text_is_not_flagged(text):
    assert pii.scan(text) == []


def test_several_findings_come_in_order_without_overlap():
    text = "山田太郎様（〒123-4567、電話03-1234-5678、taro@example.jp）"
    kinds = [f.kind for f in pii.scan(text)]
    assert kinds == ["name", "postal_code", "phone", "email"]


def test_mask_replaces_the_finding():
    text = "連絡先は03-1234-5678です"
    finding = pii.scan(text)[0]
    assert pii.mask(text, finding.start, finding.end, finding.text) == "連絡先は＊＊＊です"


def test_mask_follows_text_that_moved_and_refuses_text_that_is_gone():
    assert pii.mask("追記。03-1234-5678", 0, 12, "03-1234-5678") == "追記。＊＊＊"
    with pytest.raises(ValueError):
        pii.mask("何もない", 0, 3, "03-1234-5678")


def test_mask_all():
    assert pii.mask_all("山田太郎様 03-1234-5678") == "＊＊＊ ＊＊＊"


def test_pii_scan_command_prints_findings_as_json(app, tmp_path):
    path = tmp_path / "report.txt"
    path.write_text("山田太郎様の電話03-1234-5678", encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["pii-scan", str(path), "--json"])
    assert result.exit_code == 1  # findings exist
    assert json.loads(result.output) == [
        {"kind": "name", "start": 0, "end": 5, "text": "山田太郎様"},
        {"kind": "phone", "start": 8, "end": 20, "text": "03-1234-5678"},
    ]


def test_pii_scan_command_reads_standard_input_and_exits_0_when_clean(app):
    result = app.test_cli_runner().invoke(args=["pii-scan", "-"], input="個人情報のない文章。")
    assert result.exit_code == 0
    assert "見つかりませんでした" in result.output


def test_pii_scan_all_cases_reports_by_case_and_field(app, db):
    db.execute("UPDATE cases SET summary = summary || ' 連絡先03-1234-5678' WHERE external_id = 'ext-0001'")
    result = app.test_cli_runner().invoke(args=["pii-scan", "--all-cases", "--json"])
    findings = json.loads(result.output)
    assert {"case_id", "field", "kind", "text", "start", "end"} <= set(findings[0])
    assert any(f["text"] == "03-1234-5678" and f["field"] == "summary" for f in findings)


def test_pii_scan_all_cases_reports_comments_too(app, db):
    case_id = db.execute("SELECT case_id FROM cases WHERE external_id = 'ext-0001'").fetchone()[0]
    comment_id = db["comments"].insert({"case_id": case_id, "body": "本人の電話は090-1234-5678です",
                                        "created_at": "2026-11-30T00:00:00+00:00"}).last_pk
    db.conn.commit()
    result = app.test_cli_runner().invoke(args=["pii-scan", "--all-cases", "--json"])
    assert result.exit_code == 1
    assert {"case_id": case_id, "field": f"comment-{comment_id}", "kind": "phone",
            "text": "090-1234-5678"}.items() <= next(
        f for f in json.loads(result.output) if f["field"].startswith("comment-")).items()
