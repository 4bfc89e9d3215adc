"""Main journeys in a real headless Chromium (Debian's), driven by Playwright.

Under CI=true a missing browser fails the run; elsewhere these tests are skipped with
the reason, so a developer without Chromium still gets the rest of the suite.
"""

import os
import re
import shutil
import threading
from pathlib import Path

import pytest
from playwright.sync_api import expect
from waitress import wasyncore
from waitress.server import create_server

from tests.conftest import make_app

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def chromium():
    executable = shutil.which("chromium")
    if executable is None:
        message = "Debian's chromium is not installed (scripts/test installs it as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def live_app(tmp_path_factory):
    """The real app behind waitress on a free loopback port, with `init --demo` run."""
    # The journeys sign in many times a minute; the rate limit has its own test.
    app = make_app(tmp_path_factory.mktemp("browser"), LOGIN_RATE_LIMIT="1000 per minute")
    result = app.test_cli_runner().invoke(args=["init", "--demo"])
    assert result.exit_code == 0, result.output
    passwords = dict(re.findall(r"^  (demo-\S+)\s+(\S+)", result.output, re.MULTILINE))
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    # The address staff reach the app by: printed on slips, linked in mail.
    app.config["PUBLIC_URL"] = f"http://127.0.0.1:{server.effective_port}"
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}", passwords
    server.task_dispatcher.shutdown()
    # From the server's own loop thread: closing its sockets from here, while it waits in
    # select(), can kill that thread with "Bad file descriptor".
    server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
    thread.join(5)


@pytest.fixture
def page(chromium):
    context = chromium.new_context(locale="ja-JP", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def test_staff_signs_in_reads_an_external_case_and_signs_out(page, live_app):
    base, passwords = live_app
    ARTIFACTS.mkdir(exist_ok=True)

    page.goto(base + "/")
    assert page.url.startswith(base + "/login")
    page.get_by_label("ログインID").fill("demo-staff")
    page.get_by_label("パスワード").fill(passwords["demo-staff"])
    page.get_by_role("button", name="ログイン").click()
    page.wait_for_url(base + "/")
    expect(page.get_by_role("heading", name="これからの作業")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "home.png", full_page=True)

    page.get_by_role("navigation", name="メインメニュー").get_by_role("link", name="事例検索").click()
    # The 180 seed cases, the 21 published demo reports and demo-staff's own submitted one.
    expect(page.get_by_text("202件の事例")).to_be_visible()

    page.get_by_label("事例を検索").fill("BCC")
    page.keyboard.press("Enter")
    page.get_by_role("link", name="施設利用者へのアンケートメールをBCCでなく宛先欄で送信").click()
    assert page.get_by_role("heading", level=1).inner_text() == \
        "施設利用者へのアンケートメールをBCCでなく宛先欄で送信"
    source = page.locator(".source a")
    assert source.get_attribute("href") == "https://city.kashima.ibaraki.jp/soshiki/42/82378.html"
    expect(page.get_by_text("茨城県鹿嶋市").first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "case.png", full_page=True)

    page.get_by_role("button", name="ログアウト").click()
    page.wait_for_url(re.compile(r".*/login$"))
    expect(page.get_by_text("ログアウトしました。")).to_be_visible()
    page.goto(base + "/cases")
    assert "/login" in page.url


def test_wrong_password_shows_the_message_and_keeps_the_login_id(page, live_app):
    base, _ = live_app
    page.goto(base + "/login")
    page.get_by_label("ログインID").fill("demo-staff")
    page.get_by_label("パスワード").fill("wrong-password")
    page.get_by_label("パスワード").press("Enter")  # the keyboard alone is enough
    assert page.get_by_role("alert").inner_text() == "ログインIDまたはパスワードが正しくありません。"
    assert page.get_by_label("ログインID").input_value() == "demo-staff"


def sign_in(page, base, login_id, password):
    page.goto(base + "/login")
    page.get_by_label("ログインID").fill(login_id)
    page.get_by_label("パスワード").fill(password)
    page.get_by_role("button", name="ログイン").click()
    page.wait_for_url(base + "/")


def sign_out(page):
    page.get_by_role("button", name="ログアウト").click()


def test_staff_files_a_near_miss_in_a_minute_and_sees_it_in_my_reports(page, live_app):
    base, passwords = live_app
    sign_in(page, base, "demo-staff", passwords["demo-staff"])
    page.get_by_role("navigation", name="メインメニュー").get_by_role("link", name="報告する").click()
    page.get_by_role("link", name="ヒヤリ・ハットを報告する").click()
    page.get_by_label("何が起きそうになったか").fill("窓口で住民票の写しを別の方に渡しそうになった。")
    page.get_by_label("どうして気づいたか").fill("交付前に申請書の氏名と読み合わせて気づいた。")
    page.get_by_label("そのときの作業").select_option("counter")
    page.get_by_label("項目を絞り込む").fill("本人確認")
    visible = page.locator(".picker-item:visible")
    assert 0 < visible.count() < 10  # the filter narrows the 57 items down
    assert "本人確認" in visible.first.inner_text()
    visible.first.locator("input").check()
    page.screenshot(path=ARTIFACTS / "near-miss-form.png", full_page=True)
    page.get_by_role("button", name="提出").click()
    page.wait_for_url(base + "/reports/mine")
    card = page.locator(".report-card").filter(has_text="窓口で住民票の写しを別の方に渡しそうになった。")
    expect(card.get_by_text("提出済み")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "my-reports.png", full_page=True)
    sign_out(page)


def test_incident_is_returned_resubmitted_approved_and_published_with_a_masked_phone_number(page, live_app):
    base, passwords = live_app
    title = "就学援助の決定通知を別の世帯に郵送"

    sign_in(page, base, "demo-staff", passwords["demo-staff"])
    page.goto(base + "/reports/new/incident")
    page.get_by_label("件名").fill(title)
    page.get_by_label("発見日").fill("2026-11-02")
    page.get_by_label("作業", exact=False).first.select_option("postal")
    page.get_by_label("種別").select_option("postal_misdelivery")
    page.get_by_label("何が起きたか", exact=False).first.fill(
        "決定通知2通を1つの封筒に入れて発送した。受け取った方から 03-5555-1234 に連絡があった。")
    page.get_by_label("どう気づいたか").fill("受け取った保護者からの電話。")
    page.get_by_label("直後の対応").fill("当日中に回収し、両世帯に謝罪した。")
    page.get_by_label("影響を受けた人数").fill("2")
    page.get_by_label("守ったが見落とした").check()
    page.get_by_label("なぜ1").fill("2通が重なって1通に見えた。")
    page.get_by_label("根本原因").fill("封入後に枚数を確かめる手順がなかった。")
    page.get_by_role("button", name="対策を追加").click()
    page.get_by_label("対策1の内容").fill("封入封緘機の重量チェックで枚数違いを止める。")
    page.get_by_label("対策1で強化するチェックリストの項目").fill("4-1")
    page.get_by_role("button", name="提出").click()

    # The phone number is caught before submitting, and masked with one click.
    expect(page.get_by_text("個人情報らしき記載があります", exact=False).first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "incident-pii.png", full_page=True)
    page.get_by_role("button", name="＊＊＊で隠す").click()
    assert "＊＊＊" in page.get_by_label("何が起きたか", exact=False).first.input_value()
    page.get_by_role("button", name="提出").click()
    page.wait_for_url(base + "/reports/mine")
    sign_out(page)

    sign_in(page, base, "demo-manager", passwords["demo-manager"])
    page.goto(base + "/reports/queue/submitted")
    page.get_by_role("link", name=title).click()
    page.get_by_label("コメント（差し戻すときは必須）").fill("回収した時刻も書いてください。")
    page.get_by_role("button", name="差し戻し").click()
    expect(page.get_by_text("差し戻しました")).to_be_visible()
    sign_out(page)

    sign_in(page, base, "demo-staff", passwords["demo-staff"])
    page.goto(base + "/reports/mine")
    expect(page.get_by_text("差し戻されました：回収した時刻も書いてください。")).to_be_visible()
    page.get_by_role("link", name="直して再提出する").click()
    page.get_by_label("直後の対応").fill("11月2日16時に回収し、両世帯に謝罪した。")
    page.get_by_role("button", name="提出").click()
    page.wait_for_url(base + "/reports/mine")
    sign_out(page)

    sign_in(page, base, "demo-manager", passwords["demo-manager"])
    page.goto(base + "/reports/queue/submitted")
    page.get_by_role("link", name=title).click()
    page.get_by_role("button", name="承認").click()
    expect(page.get_by_text("承認しました")).to_be_visible()
    sign_out(page)

    sign_in(page, base, "demo-reviewer", passwords["demo-reviewer"])
    page.goto(base + "/reports/queue/approved")
    page.get_by_role("link", name=title).click()
    expect(page.get_by_text("個人情報らしき記載は見つかりませんでした。")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "reviewer-panel.png", full_page=True)
    page.get_by_role("button", name="公開").click()
    expect(page.get_by_text("公開しました")).to_be_visible()
    sign_out(page)

    sign_in(page, base, "demo-trainer", passwords["demo-trainer"])
    page.get_by_label("事例を検索").fill("就学援助")
    page.keyboard.press("Enter")
    page.get_by_role("link", name=title).click()
    expect(page.get_by_text("11月2日16時に回収し、両世帯に謝罪した。")).to_be_visible()
    expect(page.get_by_text("回収した時刻も書いてください。")).to_be_visible()
    expect(page.get_by_text("＊＊＊", exact=False).first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "published-incident.png", full_page=True)


def test_staff_prepares_a_fax_from_the_front_page_and_follows_a_similar_case(page, live_app):
    base, passwords = live_app
    sign_in(page, base, "demo-staff", passwords["demo-staff"])
    page.get_by_role("link", name="FAX送信").click()
    expect(page.get_by_role("heading", name="「FAX送信」の前に確認すること")).to_be_visible()
    assert page.locator(".checklist-items .item-code").count() == 5
    cases = page.locator(".case-list .case-card")
    assert cases.count() > 0
    page.screenshot(path=ARTIFACTS / "task-fax.png", full_page=True)
    first_title = cases.first.locator("h3 a").inner_text()
    cases.first.locator("h3 a").click()
    assert page.get_by_role("heading", level=1).inner_text() == first_title
    similar = page.locator(".similar-list a")
    assert similar.count() == 5
    other = similar.first.inner_text()
    similar.first.click()
    assert page.get_by_role("heading", level=1).inner_text() == other


def test_search_with_filters_and_highlighting(page, live_app):
    base, passwords = live_app
    sign_in(page, base, "demo-staff", passwords["demo-staff"])
    page.get_by_label("事例を検索").fill("ファクス 送り先 間違い")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/cases\?q=.*"))
    assert page.locator(".snippet mark").count() > 0
    total = int(page.locator("#result-count").inner_text().split("件")[0].replace(",", ""))
    page.locator(".facet").filter(has_text="種別").get_by_role("link", name="FAX誤送信").click()
    page.wait_for_url(re.compile(r".*incident_type=fax_missend.*"))
    narrowed = int(page.locator("#result-count").inner_text().split("件")[0].replace(",", ""))
    assert 0 < narrowed <= total
    expect(page.get_by_role("link", name="種別：FAX誤送信")).to_be_visible()
    titles = page.locator(".case-card .card-title").all_inner_texts()
    assert titles and all("FAX" in t or "ファクス" in t or "ＦＡＸ" in t or "送信" in t for t in titles[:3])
    page.screenshot(path=ARTIFACTS / "search.png", full_page=True)
    page.get_by_role("link", name="種別：FAX誤送信").click()  # remove the filter again
    page.wait_for_url(re.compile(r"^(?!.*incident_type).*$"))
    assert int(page.locator("#result-count").inner_text().split("件")[0].replace(",", "")) == total


def test_similar_cases_appear_while_filing(page, live_app):
    base, passwords = live_app
    sign_in(page, base, "demo-staff", passwords["demo-staff"])
    page.goto(base + "/reports/new/near_miss")
    page.get_by_label("何が起きそうになったか").fill("USBメモリを庁外に持ち出して紛失しそうになった。")
    panel = page.locator(".similar-panel")
    panel.locator(".similar-list li").first.wait_for()
    assert panel.locator(".similar-list li").count() >= 3
    assert "USB" in panel.inner_text()
    page.screenshot(path=ARTIFACTS / "filing-similar.png", full_page=True)


def test_reviewer_imports_a_csv_after_a_preview_and_finds_the_case(page, live_app, tmp_path):
    from tests.test_imports import CSV_JAPANESE

    base, passwords = live_app
    csv_file = tmp_path / "他自治体の事例.csv"
    csv_file.write_bytes(CSV_JAPANESE.encode("cp932"))
    sign_in(page, base, "demo-reviewer", passwords["demo-reviewer"])
    page.goto(base + "/cases")
    page.get_by_role("link", name="他自治体の事例を取り込む").click()
    page.get_by_label("ファイル").set_input_files(str(csv_file))
    page.get_by_role("button", name="内容を確認する").click()
    expect(page.get_by_text("新規 2件・更新 0件・変更なし 0件")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "import-preview.png", full_page=True)
    page.get_by_role("button", name="取り込む").click()
    expect(page.get_by_text("取り込みました：新規 2件")).to_be_visible()
    page.get_by_label("事例を検索").fill("介護認定 通知 別人")
    page.keyboard.press("Enter")
    page.get_by_role("link", name="介護認定の通知を別人に郵送").click()
    expect(page.get_by_text("千葉県テスト町").first).to_be_visible()
    sign_out(page)


def test_staff_follows_a_checklist_item_to_its_cases_and_prints_the_fax_card(page, live_app):
    base, passwords = live_app
    sign_in(page, base, "demo-reviewer", passwords["demo-reviewer"])
    # A reviewer links an external FAX case's countermeasure to item 3-3 first.
    page.goto(base + "/cases?q=FAX&incident_type=fax_missend")
    page.locator(".case-card .card-title a").first.click()
    page.locator(".link-form input[name=item_codes]").first.fill("3-3")
    page.locator(".link-form").first.get_by_role("button", name="結び付ける").click()
    expect(page.get_by_text("チェックリストとの結び付けを保存しました。")).to_be_visible()
    linked_title = page.get_by_role("heading", level=1).inner_text()
    sign_out(page)

    sign_in(page, base, "demo-staff", passwords["demo-staff"])
    page.get_by_role("navigation", name="メインメニュー").get_by_role("link", name="チェックリスト").click()
    page.locator("#item-3-3 .item-text a").click()
    expect(page.locator(".case-list").get_by_role("link", name=linked_title)).to_be_visible()
    page.get_by_role("link", name="FAX送信のカード").click()
    expect(page.get_by_role("heading", name="FAX送信の前に")).to_be_visible()
    page.emulate_media(media="print")
    page.screenshot(path=ARTIFACTS / "fax-card-print.png", full_page=True)
    assert page.locator(".site-header").is_hidden()


def test_trainer_builds_a_workshop_from_fax_cases_and_prints_the_handout(page, live_app):
    base, passwords = live_app
    sign_in(page, base, "demo-trainer", passwords["demo-trainer"])
    page.get_by_role("navigation", name="メインメニュー").get_by_role("link", name="研修").click()
    page.get_by_label("研修の名前").fill("FAX誤送信を防ぐ")
    page.get_by_role("button", name="作る").click()
    assert page.get_by_role("heading", level=1).inner_text() == "FAX誤送信を防ぐ"
    workshop_url = page.url

    page.get_by_label("事例を検索").fill("FAX")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/cases\?q=FAX.*"))
    for index in range(3):
        page.locator(".case-card").nth(index).get_by_role("button", name="研修に追加").click()
        expect(page.get_by_text("研修に追加しました。")).to_be_visible()

    page.goto(workshop_url)
    assert page.locator(".workshop-cases > li").count() == 3
    questions = page.get_by_label("話し合う問い（1行に1つ）")
    questions.fill("自分の課で起こりうるか\nFAXの番号は誰が読み上げるか")
    page.get_by_role("button", name="保存", exact=True).click()
    expect(page.get_by_text("研修を保存しました。")).to_be_visible()

    page.get_by_role("link", name="配布資料（印刷）").click()
    assert page.locator(".handout-case").count() == 3
    expect(page.get_by_text("FAXの番号は誰が読み上げるか").first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "handout.png", full_page=True)
    page.emulate_media(media="print")
    page.screenshot(path=ARTIFACTS / "handout-print.png", full_page=True)
    page.emulate_media(media="screen")
    sign_out(page)


def test_reviewer_opens_the_dashboard(page, live_app):
    base, passwords = live_app
    sign_in(page, base, "demo-reviewer", passwords["demo-reviewer"])
    page.get_by_role("navigation", name="メインメニュー").get_by_role("link", name="集計").click()
    page.locator("svg.chart").first.wait_for()
    assert page.locator("svg.chart").count() >= 3
    page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)
    # Days are typed the Japanese way, whatever the browser's language.
    page.get_by_label("期間（はじめ）").fill("2026/03/01")
    page.get_by_label("期間（おわり）").fill("令和8年1月1日")
    page.get_by_role("button", name="集計する").click()
    expect(page.get_by_text("終わりの日が始まりの日より前になっています。")).to_be_visible()
    expect(page.get_by_label("期間（おわり）")).to_have_value("令和8年1月1日")


ROSTER_DEPARTMENT = "広報課"  # a 課 of the seeded departments (企画経営部)


def roster_file(tmp_path: Path) -> Path:
    """A small roster as 人事's system exports it: CP932, Japanese headers, CRLF; five people
    in 広報課, one of them the 課長 (所属長 by positions.yaml) and one on 育児休業 today."""
    from datetime import timedelta

    from kb import dates

    today = dates.office_today()
    leave_from, leave_until = (today - timedelta(days=60)).isoformat(), (today + timedelta(days=300)).isoformat()
    rows = [
        "職員番号,氏名,氏名カナ,所属,役職,在籍区分,区分開始日,区分終了日,メールアドレス",
        f"810001,高木　正人,タカギ　マサト,{ROSTER_DEPARTMENT},課長,在職,,,takagi.masato@ward.example.jp",
        f"810002,野口　由紀,ノグチ　ユキ,{ROSTER_DEPARTMENT},主任,育児休業,{leave_from},{leave_until},noguchi.yuki@ward.example.jp",
        f"810003,三浦　健太,ミウラ　ケンタ,{ROSTER_DEPARTMENT},主事,在職,,,miura.kenta@ward.example.jp",
        f"810004,小島　葵,コジマ　アオイ,{ROSTER_DEPARTMENT},主事,,,,kojima.aoi@ward.example.jp",
        f"810005,新井　翔,アライ　ショウ,{ROSTER_DEPARTMENT},会計年度任用職員,在職,,,",
    ]
    path = tmp_path / "職員名簿_広報課.csv"
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode("cp932"))
    return path


def test_admin_imports_a_roster_prints_slips_and_a_new_person_sets_a_password(chromium, page, live_app, tmp_path):
    base, passwords = live_app
    ARTIFACTS.mkdir(exist_ok=True)

    # The admin uploads 人事's CP932 roster, reads the preview and imports it.
    sign_in(page, base, "demo-admin", passwords["demo-admin"])
    page.get_by_role("navigation", name="メインメニュー").get_by_role("link", name="職員名簿").click()
    page.get_by_role("navigation", name="職員名簿メニュー").get_by_role("link", name="名簿の取り込み").click()
    page.get_by_label("職員名簿のファイル", exact=False).set_input_files(str(roster_file(tmp_path)))
    page.get_by_role("button", name="プレビュー").click()
    expect(page.get_by_text("新規 5人・更新 0人・変更なし 0人・無効化 0人")).to_be_visible()
    added = page.locator(".import-preview table").first
    expect(added.get_by_role("cell", name="三浦　健太")).to_be_visible()
    expect(added.get_by_role("row").filter(has_text="野口　由紀").get_by_role("cell", name="育児休業")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "roster-preview.png", full_page=True)
    page.get_by_role("button", name="取り込む").click()
    expect(page.get_by_text("取り込みました：新規 5人、更新 0人、変更なし 0人、無効化 0人。")).to_be_visible()

    # The staff list, narrowed to that 課: the new people with their roles and statuses.
    page.get_by_label("所属").select_option(label=f"企画経営部 {ROSTER_DEPARTMENT}")
    page.get_by_role("button", name="絞り込む").click()
    page.wait_for_url(re.compile(r".*department_id=\d+.*"))
    rows = page.locator(".staff-table tbody tr")
    assert rows.filter(has_text="8100").count() == 5  # with the demo roster's people of that 課
    assert rows.filter(has_text=ROSTER_DEPARTMENT).count() == rows.count()
    expect(rows.filter(has_text="高木　正人").get_by_role("cell", name="所属長", exact=False)).to_be_visible()
    expect(rows.filter(has_text="野口　由紀").get_by_role("cell", name="育児休業")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "staff-list.png", full_page=True)

    # Slips for that 課: everyone without a password gets one (the demo roster's people too).
    page.get_by_role("link", name="ログイン用紙").click()
    page.get_by_label("所属（課）").select_option(label=f"企画経営部 {ROSTER_DEPARTMENT}")
    page.get_by_role("button", name="表示する").click()
    expect(page.get_by_role("cell", name="三浦　健太")).to_be_visible()
    assert page.get_by_label("パスワードをまだ設定していない人").is_checked()
    page.get_by_role("button", name="印刷する").click()
    slips = page.locator(".slip-sheet .slip")
    count = slips.count()
    assert count >= 5
    expect(page.get_by_text(f"{count}人分の用紙を作成しました")).to_be_visible()
    slip = slips.filter(has_text="三浦　健太")
    login = slip.locator(".slip-login").inner_text()
    code = slip.locator(".slip-code").inner_text()
    assert login == "810003" and re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", code)
    expect(slip.locator("svg.slip-qr")).to_be_visible()
    assert slip.locator(".slip-url").inner_text() == f"{base}/slip?login=810003"
    page.screenshot(path=ARTIFACTS / "slips-sheet.png", full_page=True)
    # As printed: no header or buttons, two columns of slips, four rows to an A4 page.
    page.set_viewport_size({"width": 733, "height": 1040})  # A4 less the 8 mm margins, at 96 dpi
    page.emulate_media(media="print")
    assert page.locator(".site-header").is_hidden() and page.locator("[data-print]").is_hidden()
    first, second, third = (slips.nth(i).bounding_box() for i in range(3))
    assert first["y"] == second["y"] and second["x"] > first["x"] and third["y"] > first["y"]
    assert 255 <= first["height"] <= 265  # 69 mm: four rows fill the page
    overflowing = page.evaluate("[...document.querySelectorAll('.slip')]"
                                ".filter(s => s.scrollHeight > s.clientHeight + 1).length")
    assert overflowing == 0  # every slip's text fits inside its cut lines
    page.screenshot(path=ARTIFACTS / "slips-sheet-print.png", full_page=True)
    pdf = page.pdf(path=ARTIFACTS / "slips-sheet.pdf", prefer_css_page_size=True)
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))
    assert pages == -(-count // 8)  # 2 × 4 slips a page
    page.emulate_media(media="screen")
    sign_out(page)

    # The new person, on another browser, uses the slip.
    context = chromium.new_context(locale="ja-JP", viewport={"width": 1280, "height": 900})
    person = context.new_page()
    person.set_default_timeout(10_000)
    try:
        person.goto(base + "/login")
        person.get_by_role("link", name="ログイン用紙のコードでパスワードを設定する").click()
        person.get_by_label("ログインID").fill(login)
        person.get_by_label("用紙のコード").fill(code.lower().replace("-", " "))  # as typed from paper
        person.get_by_role("button", name="次へ").click()
        expect(person.get_by_text("三浦　健太（広報課）さんのパスワードを決めてください。")).to_be_visible()
        person.get_by_label("新しいパスワード", exact=True).fill("kouhou1")
        person.get_by_label("新しいパスワード（確認）").fill("kouhou1")
        person.get_by_role("button", name="パスワードを設定する").click()
        expect(person.get_by_text("パスワードは10文字以上にしてください。")).to_be_visible()
        expect(person.get_by_text("ログインID 810003 のパスワードを決めてください。")).to_be_visible()
        person.screenshot(path=ARTIFACTS / "slip-choose-password.png", full_page=True)
        new_password = "みどり公園の桜並木2026"
        person.get_by_label("新しいパスワード", exact=True).fill(new_password)
        person.get_by_label("新しいパスワード（確認）").fill(new_password)
        person.get_by_role("button", name="パスワードを設定する").click()
        person.wait_for_url(base + "/")
        expect(person.get_by_text("パスワードを設定しました。", exact=False)).to_be_visible()
        assert person.locator(".account-name").inner_text().startswith("三浦")
        person.screenshot(path=ARTIFACTS / "slip-signed-in.png")
        sign_out(person)
        person.wait_for_url(re.compile(r".*/login$"))
        sign_in(person, base, login, new_password)
        assert person.locator(".account-name").inner_text().startswith("三浦")
        # The code was single-use.
        sign_out(person)
        person.goto(base + "/slip?login=" + login)
        person.get_by_label("用紙のコード").fill(code)
        person.get_by_role("button", name="次へ").click()
        expect(person.get_by_text("このコードは使用済みです。", exact=False)).to_be_visible()
    finally:
        context.close()

    # The slip page on a phone, where a QR code leads.
    phone = chromium.new_context(locale="ja-JP", viewport={"width": 390, "height": 844},
                                 device_scale_factor=2, is_mobile=True, has_touch=True)
    try:
        mobile = phone.new_page()
        mobile.goto(base + "/slip?login=810004")
        assert mobile.get_by_label("ログインID").input_value() == "810004"
        width = mobile.evaluate("document.documentElement.scrollWidth")
        assert width <= 390  # nothing wider than the phone
        mobile.screenshot(path=ARTIFACTS / "slip-phone.png", full_page=True)
    finally:
        phone.close()


SELFCHECK_TITLE = "FAX・メール送信 自己点検（ブラウザ試験）"
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}


def test_selfcheck_from_authoring_to_answers_on_a_phone_paper_sheets_and_the_rate(chromium, page, live_app):
    """Issue #13's journey: a reviewer makes a campaign from the FAX (3) and mail (4)
    sections, links a case and opens it; a member of staff answers it on a phone (one
    answer with the keyboard alone), wrong once, with the linked case explained; their
    所属長 sees who has not answered, prints the paper sheets and keys one in; the
    participation page shows the rate."""
    from datetime import timedelta

    from kb import dates

    base, passwords = live_app
    ARTIFACTS.mkdir(exist_ok=True)
    today = dates.office_today()

    # The reviewer: settings, questions from sections 3 and 4, a case for one question.
    sign_in(page, base, "demo-reviewer", passwords["demo-reviewer"])
    page.get_by_role("navigation", name="メインメニュー").get_by_role("link", name="自己点検", exact=True).click()
    page.get_by_role("link", name="新しい自己点検", exact=False).click()
    page.get_by_label("名前").fill(SELFCHECK_TITLE)
    page.get_by_label("開始日時").fill(f"{today - timedelta(days=1)}T09:00")
    # Sooner than the demo's open campaign: the banner shows the nearest deadline first.
    page.get_by_label("締切日時").fill(f"{today + timedelta(days=7)}T17:00")
    page.get_by_label("選んだ部・課", exact=False).check()
    page.get_by_label("区民部", exact=True).check()  # a 部 includes its 課 (戸籍住民課 …)
    page.get_by_label("1人あたりの問題数").fill("")  # every question: the linked one is asked
    page.get_by_label("合格点（正解数）").fill("8")
    page.get_by_label("合格するまで何度でも").check()
    page.get_by_role("button", name="保存する").click()
    expect(page.get_by_text("自己点検を作りました。", exact=False)).to_be_visible()
    page.get_by_role("checkbox", name=re.compile(r"^3 ファクス送信")).check()
    page.get_by_role("checkbox", name=re.compile(r"^4 メール送信")).check()
    page.get_by_role("button", name="問題を作る").click()
    expect(page.get_by_text(re.compile(r"チェックリストから\d+問を作りました"))).to_be_visible()
    questions = page.locator(".campaign-questions > li")
    total = questions.count()
    assert total >= 10 and questions.filter(has_text="項目 3-").count() and questions.filter(has_text="項目 4-").count()

    linked = None
    for index in range(total):
        questions.nth(index).get_by_role("link", name="編集・事例の結び付け").click()
        cases = page.locator("fieldset").filter(has_text="結び付ける事例").locator("label.choice")
        if cases.count() > 1:  # 「結び付けない」 and at least one suggested case
            choice = cases.nth(1)
            linked = {"statement": page.get_by_label("問題文").input_value(),
                      "answer": page.get_by_label("○（正しい）").is_checked(),
                      "case": choice.inner_text().split(" 教訓：")[0].strip()}
            choice.locator("input").check()
            page.screenshot(path=ARTIFACTS / "selfcheck-question-editor.png", full_page=True)
            page.get_by_role("button", name="保存する").click()
            expect(page.get_by_text("問題を保存しました。")).to_be_visible()
            break
        page.go_back()
    assert linked, "no question had a suggested case"
    expect(page.locator(".campaign-questions").get_by_text(f"事例「{linked['case']}」", exact=False)).to_be_visible()
    page.get_by_role("button", name="開始する").click()
    expect(page.get_by_text("自己点検を開始しました", exact=False)).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("実施中"))).to_be_visible()
    assert page.get_by_text("実施中・締切済みの自己点検の問題は変更できません", exact=False).count() == 0
    page.screenshot(path=ARTIFACTS / "selfcheck-campaign-open.png", full_page=True)
    campaign_id = int(re.search(r"/campaigns/(\d+)", page.url).group(1))
    sign_out(page)

    # A member of staff of 戸籍住民課, on a phone: the banner, then one question per screen.
    phone = chromium.new_context(locale="ja-JP", **PHONE)
    try:
        mobile = phone.new_page()
        mobile.set_default_timeout(10_000)
        sign_in(mobile, base, "demo-staff", passwords["demo-staff"])
        banner = mobile.locator(".selfcheck-banner")
        expect(banner.get_by_role("link", name=re.compile(r"^自己点検があります（期限 \d+月\d+日・約\d+分）$"))).to_be_visible()
        assert SELFCHECK_TITLE in banner.inner_text()
        banner.get_by_role("link").click()
        mobile.get_by_role("button", name="始める").click()
        keyboard_used = wrong_shown = False
        for number in range(1, total + 1):
            assert mobile.locator(".selfcheck-progress").inner_text() == f"問{number} / {total}"
            statement = mobile.locator(".selfcheck-statement").inner_text()
            yes, no = mobile.locator(".selfcheck-true"), mobile.locator(".selfcheck-false")
            for button in (yes, no):  # big enough for a thumb, side by side, inside the screen
                box = button.bounding_box()
                assert box["height"] >= 90 and box["width"] >= 150 and box["x"] + box["width"] <= 390
            if number == 1:
                mobile.screenshot(path=ARTIFACTS / "selfcheck-phone-question.png", full_page=True)
                # the header's search box is not filled with anything of the question
                assert mobile.locator("#header-q").input_value() == ""
            if statement == linked["statement"]:
                (no if linked["answer"] else yes).tap()  # the wrong answer, on purpose
                feedback = mobile.locator(".selfcheck-feedback")
                feedback.wait_for()
                expect(feedback.get_by_role("heading", name=re.compile("^不正解です"))).to_be_visible()
                case = mobile.locator(".selfcheck-case")
                expect(case.get_by_role("link", name=linked["case"])).to_be_visible()
                expect(case.locator(".lesson, .selfcheck-case-summary")).to_be_visible()  # its lesson, else what happened
                expect(feedback.locator(".selfcheck-item a")).to_be_visible()
                mobile.screenshot(path=ARTIFACTS / "selfcheck-phone-wrong.png", full_page=True)
                wrong_shown = True
                mobile.locator(".selfcheck-go").tap()
            elif not keyboard_used:
                # The keyboard alone: ○ has the focus, Tab moves to ×, Enter answers.
                assert mobile.evaluate("document.activeElement.value") == "1"
                mobile.keyboard.press("Tab")
                assert mobile.evaluate("document.activeElement.value") == "0"
                mobile.keyboard.press("Enter")
                mobile.locator(".selfcheck-feedback").wait_for()
                expect(mobile.get_by_text("あなたの答え：×", exact=False)).to_be_visible()
                # then 「次の問題へ」 has the focus: Enter goes on
                assert mobile.evaluate("document.activeElement.classList.contains('selfcheck-go')")
                mobile.keyboard.press("Enter")
                keyboard_used = True
            else:
                yes.tap()
                mobile.locator(".selfcheck-go").tap()
            if number < total:
                mobile.wait_for_url(re.compile(rf".*/{number + 1}$"))
        assert keyboard_used and wrong_shown
        mobile.wait_for_url(re.compile(r".*/result$"))
        expect(mobile.get_by_role("heading", name=re.compile(rf"^結果：{total}問中 \d+問正解$"))).to_be_visible()
        missed = mobile.locator(".selfcheck-missed")
        expect(missed.get_by_text(f"「{linked['statement']}」", exact=False)).to_be_visible()
        assert mobile.evaluate("document.documentElement.scrollWidth") <= 390
        mobile.screenshot(path=ARTIFACTS / "selfcheck-phone-result.png")  # the first screenful
        mobile.screenshot(path=ARTIFACTS / "selfcheck-phone-result-full.png", full_page=True)
        mobile.goto(base + "/")
        assert SELFCHECK_TITLE not in (mobile.locator(".selfcheck-banner").all_inner_texts() or [""])[0]
    finally:
        phone.close()

    # Their 所属長: who has not answered, the paper sheets, one sheet keyed in.
    sign_in(page, base, "demo-manager", passwords["demo-manager"])
    page.get_by_role("navigation", name="メインメニュー").get_by_role("link", name="自己点検（所属）").click()
    page.get_by_role("row").filter(has_text=SELFCHECK_TITLE).get_by_role("link", name="戸籍住民課").click()
    expect(page.get_by_role("heading", name="戸籍住民課の回答状況")).to_be_visible()
    done = page.locator("section").filter(has=page.get_by_role("heading", name=re.compile(r"^回答済み")))
    waiting = page.locator("section").filter(has=page.get_by_role("heading", name=re.compile(r"^未回答")))
    expect(done.get_by_role("cell", name="デモ 職員")).to_be_visible()
    expect(done.get_by_role("row").filter(has_text="デモ 職員").get_by_role("cell", name="オンライン")).to_be_visible()
    not_yet = waiting.locator("tbody tr")
    waiting_count = not_yet.count()
    assert waiting_count >= 2
    page.screenshot(path=ARTIFACTS / "selfcheck-manager.png", full_page=True)

    page.get_by_role("link", name="未回答の人の回答用紙（A4）を印刷する").click()
    sheets = page.locator(".answer-sheet")
    assert sheets.count() == waiting_count
    assert sheets.first.locator(".answer-sheet-questions li").count() == total
    page.set_viewport_size({"width": 733, "height": 1040})  # A4 less the margins, at 96 dpi
    page.emulate_media(media="print")
    assert page.locator(".site-header").is_hidden() and page.locator("[data-print]").is_hidden()
    assert page.locator(".selfcheck-banner").count() == 0 or page.locator(".selfcheck-banner").is_hidden()
    first_sheet = sheets.first.bounding_box()
    assert first_sheet["height"] <= 1040  # one sheet fits on its A4 page
    sheets.first.screenshot(path=ARTIFACTS / "selfcheck-sheets-print.png")
    pdf = page.pdf(path=ARTIFACTS / "selfcheck-sheets.pdf", prefer_css_page_size=True)
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf)) == sheets.count()  # one A4 each
    page.emulate_media(media="screen")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.go_back()

    person = not_yet.first.locator("td").nth(1).inner_text()
    not_yet.first.get_by_role("link", name="用紙の回答を入力する").click()
    page.screenshot(path=ARTIFACTS / "selfcheck-key-in.png", full_page=True)
    expect(page.get_by_text(f"{SELFCHECK_TITLE}：{person}", exact=False)).to_be_visible()
    page.get_by_role("button", name="入力する").click()  # nothing chosen: refused, said why
    expect(page.get_by_role("alert").filter(has_text="選ばれていない問題があります")).to_be_visible()
    fields = page.locator(".key-in-questions fieldset")
    for index in range(fields.count()):
        fields.nth(index).get_by_label("○" if index % 3 else "×").check()
    page.get_by_role("button", name="入力する").click()
    expect(page.get_by_text("用紙の回答を入力しました（紙で回答）。")).to_be_visible()
    expect(done.get_by_role("row").filter(has_text=person).get_by_role("cell", name="紙で回答")).to_be_visible()
    assert waiting.get_by_role("cell", name=person).count() == 0

    # The participation page, from the menu: the rate per 部 and 課 as a chart.
    page.get_by_role("navigation", name="メインメニュー").get_by_role("link", name="自己点検の回答率").click()
    page.get_by_role("link", name=SELFCHECK_TITLE).click()
    page.wait_for_url(f"{base}/participation/{campaign_id}")
    expect(page.get_by_text(re.compile(r"全体：対象 \d+人・回答 2人・回答率 \d+\.\d%"))).to_be_visible()
    chart = page.locator("svg.rate-chart").last
    expect(chart.get_by_text("戸籍住民課", exact=True)).to_be_visible()
    assert chart.locator("title").filter(has_text=re.compile(r"^戸籍住民課 \d+\.\d%（2/\d+人）$")).count() == 1
    assert chart.locator("text").filter(has_text=re.compile(r"^100%$")).count() == 1  # the 100 % line
    page.screenshot(path=ARTIFACTS / "participation.png", full_page=True)
    sign_out(page)

    # The reviewer reaches any 所属's page from the campaign's figures.
    sign_in(page, base, "demo-reviewer", passwords["demo-reviewer"])
    page.goto(f"{base}/campaigns/{campaign_id}")
    page.locator(".data-table").get_by_role("link", name="戸籍住民課").click()
    expect(page.get_by_role("heading", name="戸籍住民課の回答状況")).to_be_visible()
    expect(done.get_by_role("row").filter(has_text=person).get_by_role("cell", name="紙で回答")).to_be_visible()
    page.get_by_role("link", name="自己点検の回答状況").click()  # the breadcrumb: not a 403
    expect(page.get_by_role("heading", name="自己点検の回答状況")).to_be_visible()
    sign_out(page)


DOCS_SCREENSHOTS = Path(__file__).parent.parent / "docs" / "screenshots"


def test_demo_reviewer_and_manager_find_the_dashboard_and_queues_filled(page, live_app):
    """Issue #15: right after `init --demo`, the demo reviewer's and 所属長's first pages
    show the demo reports: the figures, the overdue countermeasures, both queues, the
    deadlines and 改訂候補."""
    base, passwords = live_app
    sign_in(page, base, "demo-reviewer", passwords["demo-reviewer"])
    page.get_by_role("navigation", name="メインメニュー").get_by_role("link", name="集計").click()
    page.locator("svg.chart").first.wait_for()
    departments = page.locator("section").filter(
        has=page.get_by_role("heading", name="所属別（庁内）：事故とヒヤリ・ハット")).locator("tbody tr")
    assert departments.count() >= 8
    expect(departments.filter(has_text="生活福祉課")).to_be_visible()
    assert page.locator(".overdue").filter(has_text="【デモ】").count() >= 3  # overdue countermeasures
    page.screenshot(path=DOCS_SCREENSHOTS / "dashboard.png", full_page=True)

    page.goto(base + "/reports/queue/approved")
    waiting = page.locator(".data-table tbody tr").filter(has_text="【デモ】")
    assert waiting.count() >= 5
    page.goto(base + "/reports/deadlines")
    expect(page.get_by_role("link", name=re.compile("^【デモ】口座振替の案内メール"))).to_be_visible()
    page.goto(base + "/checklist/revision")
    assert page.get_by_role("link", name=re.compile("^【デモ】")).count() >= 3
    sign_out(page)

    sign_in(page, base, "demo-manager", passwords["demo-manager"])
    page.goto(base + "/reports/queue/submitted")
    mine = page.locator(".data-table tbody tr").filter(has_text="【デモ】")
    assert mine.count() >= 3
    expect(mine.filter(has_text="戸籍住民課").first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "demo-manager-queue.png", full_page=True)
    page.get_by_role("navigation", name="メインメニュー").get_by_role("link", name="集計").click()
    page.locator("svg.chart").first.wait_for()
    expect(page.get_by_text("あなたの所属（戸籍住民課）の報告を集計しています。")).to_be_visible()
    sign_out(page)


def _guide_shot(page, name, locator=None, full_page=True):
    """A screenshot for docs/ja/利用の手引き.md, written to docs/screenshots/ at 1280 wide.
    The whole file name is spelt at each call: tests/test_docs.py greps for it."""
    target = DOCS_SCREENSHOTS / name
    if locator is not None:
        locator.screenshot(path=target)
    else:
        page.screenshot(path=target, full_page=full_page)


def test_the_user_guide_pages_show_the_demo_and_are_captured_for_the_guide(page, live_app):
    """Issue #15: the pages 利用の手引き shows that no other journey captures, each checked
    for what the guide says is on it before its screenshot is taken."""
    base, passwords = live_app
    nav = page.get_by_role("navigation", name="メインメニュー")
    miss = "ザリガニ"  # found nowhere: the search log lists it for the reviewer below

    # 職員: the self-check banner on the front page, the vocabulary notice, the report choice.
    sign_in(page, base, "demo-staff", passwords["demo-staff"])
    expect(page.locator(".selfcheck-banner").get_by_role("link", name=re.compile(
        r"^自己点検があります（期限 \d+月\d+日・約\d+分）$"))).to_be_visible()
    expect(page.get_by_role("navigation", name="作業を選ぶ").get_by_role("link", name="FAX送信")).to_be_visible()
    _guide_shot(page, "guide-home-banner.png", full_page=False)
    page.get_by_label("事例を検索").fill("書類をなくした")
    page.keyboard.press("Enter")
    expect(page.get_by_text(re.compile(r"『なくした』は『.+』も含めて検索しました。"))).to_be_visible()
    expect(page.get_by_role("link", name="入力した言葉だけで検索する")).to_be_visible()
    assert page.locator(".case-card").count() > 0
    _guide_shot(page, "guide-search-vocabulary.png", full_page=False)
    page.get_by_label("事例を検索").fill(miss)
    page.keyboard.press("Enter")
    expect(page.get_by_text("0件", exact=False).first).to_be_visible()
    nav.get_by_role("link", name="報告する").click()
    expect(page.get_by_role("link", name=re.compile("^ヒヤリ・ハットを報告する"))).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("^事故を報告する"))).to_be_visible()
    _guide_shot(page, "guide-report-new.png")
    sign_out(page)

    # 所属長: the approval queue, a countermeasure's progress, the 自己点検 list.
    sign_in(page, base, "demo-manager", passwords["demo-manager"])
    page.goto(base + "/reports/queue/submitted")
    assert page.locator(".data-table tbody tr").filter(has_text="【デモ】").count() >= 3
    _guide_shot(page, "guide-manager-queue.png")
    page.goto(base + "/dashboard")
    page.locator(".overdue a, .data-table a").filter(has_text="【デモ】委任状の範囲を超えて").first.click()
    countermeasures = page.locator("#countermeasures")
    expect(countermeasures.get_by_label("進み具合").first).to_be_visible()
    expect(countermeasures.get_by_role("button", name="更新").first).to_be_visible()
    _guide_shot(page, "guide-countermeasures.png", countermeasures)
    nav.get_by_role("link", name="自己点検（所属）").click()
    expect(page.get_by_role("link", name="戸籍住民課").first).to_be_visible()
    _guide_shot(page, "guide-selfcheck-manage.png")
    sign_out(page)

    # 情報管理担当: the queues, 報告期限 and the 公表 record, sharing, 言い換え, 検索ログ, 自己点検.
    sign_in(page, base, "demo-reviewer", passwords["demo-reviewer"])
    page.goto(base + "/reports/queue/approved")
    assert page.locator(".data-table tbody tr").filter(has_text="【デモ】").count() >= 5
    _guide_shot(page, "guide-reviewer-queue.png")
    page.get_by_role("navigation", name="報告メニュー").get_by_role("link", name="報告期限").click()
    deadline = page.get_by_role("link", name=re.compile("^【デモ】口座振替の案内メール"))
    expect(deadline).to_be_visible()
    _guide_shot(page, "guide-deadlines.png")
    deadline.click()
    record = page.locator("#statutory")
    expect(record.get_by_label("公表のURL", exact=False)).to_be_visible()
    expect(record.get_by_role("button", name="報告・公表の記録を保存")).to_be_visible()
    _guide_shot(page, "guide-statutory.png", record)
    page.goto(base + "/sharing/export")
    expect(page.get_by_role("button", name="書き出す（ダウンロード）")).to_be_visible()
    _guide_shot(page, "guide-sharing-export.png")
    nav.get_by_role("link", name="言い換え").click()
    expect(page.get_by_role("heading", name="言い換え（同義語）")).to_be_visible()
    expect(page.get_by_role("cell", name=re.compile("なくした")).first).to_be_visible()
    _guide_shot(page, "guide-vocabulary.png", full_page=False)
    page.get_by_role("link", name="標準の言い換えから取り込む").click()
    expect(page.get_by_text("標準の言い換えは、すべていまの言い換えに入っています。")).to_be_visible()
    nav.get_by_role("link", name="検索ログ").click()
    expect(page.get_by_role("cell", name=miss, exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=f"「{miss}」の言い換えを追加")).to_be_visible()
    _guide_shot(page, "guide-search-log.png")
    nav.get_by_role("link", name="自己点検", exact=True).click()
    expect(page.get_by_role("link", name="【デモ】下期 個人情報 自己点検（FAX・メール）")).to_be_visible()
    _guide_shot(page, "guide-campaigns.png")
    sign_out(page)

    # 研修担当: making a workshop.
    sign_in(page, base, "demo-trainer", passwords["demo-trainer"])
    nav.get_by_role("link", name="研修").click()
    expect(page.get_by_role("heading", name="新しい研修を作る")).to_be_visible()
    expect(page.get_by_label("研修の名前")).to_be_visible()
    _guide_shot(page, "guide-workshops.png")
    sign_out(page)
