import pytest

from kb.rendering import japanese_date, render_markdown

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
