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
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}", passwords
    server.close()


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
    assert page.get_by_role("heading", name="これからの作業").is_visible()
    page.screenshot(path=ARTIFACTS / "home.png", full_page=True)

    page.get_by_role("navigation", name="メインメニュー").get_by_role("link", name="事例検索").click()
    assert page.get_by_text("180件の事例").is_visible()

    page.get_by_label("事例を検索").fill("BCC")
    page.keyboard.press("Enter")
    page.get_by_role("link", name="施設利用者へのアンケートメールをBCCでなく宛先欄で送信").click()
    assert page.get_by_role("heading", level=1).inner_text() == \
        "施設利用者へのアンケートメールをBCCでなく宛先欄で送信"
    source = page.locator(".source a")
    assert source.get_attribute("href") == "https://city.kashima.ibaraki.jp/soshiki/42/82378.html"
    assert page.get_by_text("茨城県鹿嶋市").first.is_visible()
    page.screenshot(path=ARTIFACTS / "case.png", full_page=True)

    page.get_by_role("button", name="ログアウト").click()
    page.wait_for_url(re.compile(r".*/login$"))
    assert page.get_by_text("ログアウトしました。").is_visible()
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
    assert card.get_by_text("提出済み").is_visible()
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
    assert page.get_by_text("個人情報らしき記載があります", exact=False).first.is_visible()
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
    assert page.get_by_text("差し戻しました").is_visible()
    sign_out(page)

    sign_in(page, base, "demo-staff", passwords["demo-staff"])
    page.goto(base + "/reports/mine")
    assert page.get_by_text("差し戻されました：回収した時刻も書いてください。").is_visible()
    page.get_by_role("link", name="直して再提出する").click()
    page.get_by_label("直後の対応").fill("11月2日16時に回収し、両世帯に謝罪した。")
    page.get_by_role("button", name="提出").click()
    page.wait_for_url(base + "/reports/mine")
    sign_out(page)

    sign_in(page, base, "demo-manager", passwords["demo-manager"])
    page.goto(base + "/reports/queue/submitted")
    page.get_by_role("link", name=title).click()
    page.get_by_role("button", name="承認").click()
    assert page.get_by_text("承認しました").is_visible()
    sign_out(page)

    sign_in(page, base, "demo-reviewer", passwords["demo-reviewer"])
    page.goto(base + "/reports/queue/approved")
    page.get_by_role("link", name=title).click()
    assert page.get_by_text("個人情報らしき記載は見つかりませんでした。").is_visible()
    page.screenshot(path=ARTIFACTS / "reviewer-panel.png", full_page=True)
    page.get_by_role("button", name="公開").click()
    assert page.get_by_text("公開しました").is_visible()
    sign_out(page)

    sign_in(page, base, "demo-trainer", passwords["demo-trainer"])
    page.get_by_label("事例を検索").fill("就学援助")
    page.keyboard.press("Enter")
    page.get_by_role("link", name=title).click()
    assert page.get_by_text("11月2日16時に回収し、両世帯に謝罪した。").is_visible()
    assert page.get_by_text("回収した時刻も書いてください。").is_visible()
    assert page.get_by_text("＊＊＊", exact=False).first.is_visible()
    page.screenshot(path=ARTIFACTS / "published-incident.png", full_page=True)


def test_staff_prepares_a_fax_from_the_front_page_and_follows_a_similar_case(page, live_app):
    base, passwords = live_app
    sign_in(page, base, "demo-staff", passwords["demo-staff"])
    page.get_by_role("link", name="FAX送信").click()
    assert page.get_by_role("heading", name="「FAX送信」の前に確認すること").is_visible()
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
    assert page.get_by_role("link", name="種別：FAX誤送信").is_visible()
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
    assert page.get_by_text("新規 2件・更新 0件・変更なし 0件").is_visible()
    page.screenshot(path=ARTIFACTS / "import-preview.png", full_page=True)
    page.get_by_role("button", name="取り込む").click()
    assert page.get_by_text("取り込みました：新規 2件").is_visible()
    page.get_by_label("事例を検索").fill("介護認定 通知 別人")
    page.keyboard.press("Enter")
    page.get_by_role("link", name="介護認定の通知を別人に郵送").click()
    assert page.get_by_text("千葉県テスト町").first.is_visible()
    sign_out(page)


def test_staff_follows_a_checklist_item_to_its_cases_and_prints_the_fax_card(page, live_app):
    base, passwords = live_app
    sign_in(page, base, "demo-reviewer", passwords["demo-reviewer"])
    # A reviewer links an external FAX case's countermeasure to item 3-3 first.
    page.goto(base + "/cases?q=FAX&incident_type=fax_missend")
    page.locator(".case-card .card-title a").first.click()
    page.locator(".link-form input[name=item_codes]").first.fill("3-3")
    page.locator(".link-form").first.get_by_role("button", name="結び付ける").click()
    assert page.get_by_text("チェックリストとの結び付けを保存しました。").is_visible()
    linked_title = page.get_by_role("heading", level=1).inner_text()
    sign_out(page)

    sign_in(page, base, "demo-staff", passwords["demo-staff"])
    page.get_by_role("navigation", name="メインメニュー").get_by_role("link", name="チェックリスト").click()
    page.locator("#item-3-3 .item-text a").click()
    assert page.locator(".case-list").get_by_role("link", name=linked_title).is_visible()
    page.get_by_role("link", name="FAX送信のカード").click()
    assert page.get_by_role("heading", name="FAX送信の前に").is_visible()
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
        assert page.get_by_text("研修に追加しました。").is_visible()

    page.goto(workshop_url)
    assert page.locator(".workshop-cases > li").count() == 3
    questions = page.get_by_label("話し合う問い（1行に1つ）")
    questions.fill("自分の課で起こりうるか\nFAXの番号は誰が読み上げるか")
    page.get_by_role("button", name="保存", exact=True).click()
    assert page.get_by_text("研修を保存しました。").is_visible()

    page.get_by_role("link", name="配布資料（印刷）").click()
    assert page.locator(".handout-case").count() == 3
    assert page.get_by_text("FAXの番号は誰が読み上げるか").first.is_visible()
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
    page.get_by_label("期間（はじめ）").fill("2026-03-01")
    page.get_by_label("期間（おわり）").fill("2026-01-01")
    page.get_by_role("button", name="集計する").click()
    assert page.get_by_text("終わりの日が始まりの日より前になっています。").is_visible()
