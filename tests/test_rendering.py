import time

import pytest
from markupsafe import escape

from kb import rendering
from kb.rendering import japanese_date, render_markdown
from tests.conftest import login
from tests.reporting import file_report, incident_form

HOSTILE = [
    ("<script>alert(1)</script>", "<script"),
    ('<img src=x onerror="alert(1)">', "onerror"),
    ("[click](javascript:alert(1))", "javascript:"),
    ("[data](data:text/html;base64,PHNjcmlwdD4=)", "data:"),
    ('<svg><circle onload="alert(1)"/></svg>', "<svg"),
    ('<a href="https://ok.example" onclick="x()">a</a>', "onclick"),
    ('<p style="position:fixed">x</p>', "style="),
    ("<iframe src=https://evil.example></iframe>", "<iframe"),
    ('<div><b>unclosed <i>tags', "<div"),
    ("<form action=https://evil.example><input name=q></form>", "<form"),
]


@pytest.mark.parametrize("source, forbidden", HOSTILE)
def test_hostile_markdown_is_rendered_inert(source, forbidden):
    assert forbidden not in str(render_markdown(source)).lower()


def test_ordinary_markdown_survives():
    html = str(render_markdown("**重要**\n\n- 一つ目\n- 二つ目\n\n[出典](https://example.jp)"))
    assert "<strong>重要</strong>" in html
    assert "<li>一つ目</li>" in html
    assert 'href="https://example.jp"' in html and 'rel="noopener noreferrer"' in html


@pytest.mark.parametrize("value, expected", [
    ("2024-12-05", "2024年12月5日"), ("2024-12", "2024年12月"), ("2024", "2024年"),
    (None, "記載なし"), ("", "記載なし"),
])
def test_japanese_date(value, expected):
    assert japanese_date(value) == expected


# Inputs that made Python-Markdown take seconds (quadratic bracket pairing) or hundreds of ms
# (dense emphasis, code, html, tables, deep nesting), at the longest length a field takes.
PATHOLOGICAL = {
    "open brackets": "[" * 4000,
    "brackets then closers": "[" * 2000 + "]" * 2000,
    "bracket and backtick": "[`" * 2000,
    "japanese and brackets": "あ[" * 2000,
    "image openers": "![" * 2000,
    "unclosed link targets": "[x](" * 1000,
    "emphasis": "*a" * 2000,
    "strong and emphasis": "*_" * 2000,
    "html openers": "<a" * 2000,
    "autolinks": "<http://" * 500,
    "code spans": "`\n" * 2000,
    "nested lists": "- " * 2000,
    "nested quotes": "> " * 2000,
    "nested numbered lists": "1. " * 1333,
    "indented list": "".join("  " * i + "- x\n" for i in range(120)),
    "reference chain": "[x][r1] " * 500,
    "table rows": "|a|b|\n|-|-|\n" + "|x|y|\n" * 664,
    # Lines that end a paragraph early make the tables extension re-read the rest each time
    # (300 ms a field); short paragraphs and lines cost per block and per line.
    "setext underlines": "=\n" * 2000,
    "setext headings": "a\n-\n" * 1000,
    "rules": "---\n" * 1000,
    "one-character paragraphs": "a\n\n" * 1333,
    "one-character lines": "a\n" * 2000,
}


@pytest.mark.parametrize("name", PATHOLOGICAL)
def test_pathological_markdown_is_shown_as_the_plain_text_typed(name):
    text = PATHOLOGICAL[name]
    assert rendering.renders_as_plain_text(text), name
    html = str(render_markdown(text))
    assert html == "<p>" + str(rendering.escape(text)).replace("\n", "<br>") + "</p>"


def test_pathological_markdown_with_script_stays_escaped():
    html = str(render_markdown("<script>alert(1)</script>*a" * 300))
    assert "<script" not in html and "&lt;script&gt;" in html


def test_a_report_with_lists_links_quotes_and_emphasis_is_still_markdown():
    paragraph = ("**宛名の確認**を二人で行う。\n\n- 封入前に数える\n- 宛名を読み上げる\n"
                 "  - 読み合わせ表に記入\n\n> 課長から全員へ周知した。\n\n"
                 "[手順書](https://example.jp/manual) と `FAX-01` を参照。\n\n")
    text = (paragraph * 8)[:4000]
    assert not rendering.renders_as_plain_text(text)
    html = str(render_markdown(text))
    assert "<strong>宛名の確認</strong>" in html and "<blockquote>" in html and "<code>FAX-01</code>" in html
    assert "<ul>\n<li>封入前に数える</li>" in html and 'href="https://example.jp/manual"' in html


def test_a_few_unclosed_brackets_in_a_long_text_are_still_markdown():
    text = "[注] 封入前に宛名を確認した。**二人で**確認する。" * 100
    assert not rendering.renders_as_plain_text(text[:600])
    assert "<strong>二人で</strong>" in str(render_markdown(text[:600]))


def test_bracket_work_counts_reading_to_the_partner_or_the_paragraph_end():
    assert rendering.bracket_work("[ab]") == 3
    assert rendering.bracket_work("[ab") == 3
    assert rendering.bracket_work("[a\n\n[b") == 2 + 2  # each paragraph on its own
    assert rendering.bracket_work("[[x]]") == 4 + 2
    assert rendering.bracket_work("(a)[b]") == 2 + 2


def test_rendering_the_same_text_again_is_served_from_the_cache():
    text = "キャッシュの確認：**一度だけ**描画する。"
    render_markdown(text)
    before = rendering._render_markdown.cache_info()
    assert str(render_markdown(text)) == str(render_markdown(text))
    after = rendering._render_markdown.cache_info()
    assert after.hits == before.hits + 2 and after.misses == before.misses


def test_a_case_page_of_pathological_markdown_in_every_field_renders_in_under_100_ms(
        client, make_user):
    """Through the real page: every rendered field of an incident at its limit, cache empty
    (a case page of 「=」 lines took 460 ms CPU)."""
    make_user("reporter", "staff")
    login(client, "reporter")
    for unit in ("=\n", "a\n-\n", "---\n", "a\n\n", "a\n"):
        form = incident_form(summary=(unit * 4000)[:4000], how_found=(unit * 2000)[:2000],
                             immediate_action=(unit * 2000)[:2000],
                             secondary_damage=(unit * 1000)[:1000])
        case_id = file_report(client, "incident", form)
        timings = []
        for _ in range(3):
            rendering._render_markdown.cache_clear()
            started = time.process_time()
            assert client.get(f"/cases/{case_id}").status_code == 200
            timings.append(time.process_time() - started)
        assert min(timings) < 0.1, (unit, timings)


@pytest.mark.parametrize("url, shown", [
    ("https://example.jp/news/%E5%80%8B%E4%BA%BA%E6%83%85%E5%A0%B1.html",
     "https://example.jp/news/個人情報.html"),
    # ASCII escapes keep their meaning: %2B stays, not a "+" that would read as a space
    ("https://example.jp/a?t=09:00%2B09:00&q=%E8%AA%A4", "https://example.jp/a?t=09:00%2B09:00&q=誤"),
    # an ideographic space, a right-to-left override and invalid UTF-8 stay escaped
    ("https://example.jp/%E8%AA%A4%E3%80%80%E9%80%81", "https://example.jp/誤%E3%80%80送"),
    ("https://example.jp/a%E2%80%AEgpj.exe", "https://example.jp/a%E2%80%AEgpj.exe"),
    ("https://example.jp/%FF%FE", "https://example.jp/%FF%FE"),
    ("https://xn--eckwd4c7c.xn--zckzah/", "https://ドメイン.テスト/"),
    ("https://example.jp/plain", "https://example.jp/plain"),
    ("", ""),
])
def test_readable_url_decodes_japanese_for_display_only(url, shown):
    assert rendering.readable_url(url) == shown


def test_an_external_cases_source_link_is_shown_decoded_and_links_exactly(app, client, signed_in):
    signed_in("staff")
    from kb.db import get_db
    with app.app_context():
        case_id, url = get_db().execute(
            "SELECT case_id, source_url FROM cases WHERE source_url LIKE '%\\%E%' ESCAPE '\\'"
            " AND status = 'published' LIMIT 1").fetchone()
    page = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert f'href="{escape(url)}"' in page  # the link itself is exact
    shown = rendering.readable_url(url)
    assert str(escape(shown)) in page and shown != url and "%E3%82%A4" not in shown
