"""Markdown → sanitised HTML: the only place user text becomes markup.

Python-Markdown renders, nh3 (ammonia) removes everything outside a small allow-list,
so a report cannot carry script, event handlers, styles or javascript: links.
"""

import csv
import functools
import io
import re
import unicodedata
import urllib.parse

import markdown
import nh3
from markupsafe import Markup, escape

from kb import cases, dates, reports, roles, statutory

ALLOWED_TAGS = {
    "p", "br", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li",
    "h3", "h4", "h5", "h6", "hr", "a", "table", "thead", "tbody", "tr", "th", "td",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}
MARKDOWN_EXTENSIONS = ("tables", "sane_lists", "nl2br")
# Rendered texts kept in memory: a case page renders up to four, a handout one per case.
# At most ~4,000 characters each (and their HTML), 1,024 entries stay within ~40 MB.
RENDER_CACHE_SIZE = 1024


# Python-Markdown pairs brackets by reading forward from every "[" (and every "(" of a
# link) to its partner or to the end of the paragraph, so unclosed or deeply nested
# brackets cost quadratic time: "[" typed 4,000 times took 7 s to render. Text whose
# pairing would read more characters than this is shown as plain text (its words are all
# there, as typed); ordinary text with links reads a few hundred.
MAX_BRACKET_WORK = 10_000
BLOCK_BREAK = re.compile(r"\n[ \t]*\n")


def bracket_work(text: str) -> int:
    """An upper bound of the characters Python-Markdown reads to pair the brackets of
    ``text``: per paragraph, from each "[" or "(" to its partner, or to the paragraph's end
    for one left open. Linear time."""
    work = 0
    for block in BLOCK_BREAK.split(text):
        for opening, closing in (("[", "]"), ("(", ")")):
            if opening not in block:
                continue
            open_at = []
            for position, char in enumerate(block):
                if char == opening:
                    open_at.append(position)
                elif char == closing and open_at:
                    work += position - open_at.pop()
            work += sum(len(block) - position for position in open_at)
    return work


# Everything else Python-Markdown does is linear, but at 40-90 µs per markup character
# (emphasis, code spans, html, table pipes, nested list and quote markers; "<" costs about
# four times that) a field of 4,000 such characters takes 100-250 ms, and a case page shows
# four fields. Text with more markup than this is shown as plain text, which keeps each
# field to a few tens of ms; a report with a few lists, links and bold words stays far below.
MAX_MARKUP_WEIGHT = 300
# Each level of nested lists or quotes is parsed again: 150 levels of 「- 」 on one line cost
# 50 ms. More markers than this opening one line (over ~10 levels) is shown as plain text.
MAX_LINE_MARKERS = 32
INLINE_MARKUP = re.compile(r"[\[\]()*_<>`\\|!&]")
BLOCK_MARKERS = re.compile(r"^(?:[ \t]*(?:>|[-*+](?=[ \t])|\d{1,9}[.)](?=[ \t])|#+|\|))+", re.MULTILINE)


# Lines and blocks cost too. A line that ends a paragraph early — a setext underline
# (「=」 or 「-」 alone), a rule (「---」) — makes the parser test the rest of the paragraph
# again (the tables extension splits it into lines each time): 2,000 lines of 「=」 took
# 300 ms for one field, a case page of them 460 ms. Each such line counts as much as
# SPLIT_LINE_WEIGHT markup characters; each paragraph break (~65 µs) as one; and every
# second line (~25 µs each) as one.
SPLIT_LINES = re.compile(r"^[ \t]*(?:=+|-+|(?:[-*_][ \t]*){3,})[ \t]*$", re.MULTILINE)
SPLIT_LINE_WEIGHT = 20


def markup_weight(text: str) -> int:
    """The markup characters of ``text``: inline ones anywhere ("<" counted four times), the
    markers (quotes, bullets, numbers, headings, pipes) that open each line, and the lines,
    paragraph breaks and paragraph-splitting lines (see ``SPLIT_LINES``)."""
    return len(INLINE_MARKUP.findall(text)) + 3 * text.count("<") \
        + sum(map(len, BLOCK_MARKERS.findall(text))) \
        + SPLIT_LINE_WEIGHT * len(SPLIT_LINES.findall(text)) \
        + len(BLOCK_BREAK.findall(text)) + text.count("\n") // 2


def renders_as_plain_text(text: str) -> bool:
    """True when ``text`` would cost the Markdown parser too much (see the limits above)."""
    return bracket_work(text) > MAX_BRACKET_WORK or markup_weight(text) > MAX_MARKUP_WEIGHT \
        or max(map(len, BLOCK_MARKERS.findall(text)), default=0) > MAX_LINE_MARKERS


def render_markdown(text: str | None) -> Markup:
    """Safe HTML for a Markdown text; links get rel="noopener noreferrer".

    Bounded work whatever was typed: text that would make the parser quadratic
    (`bracket_work`), is mostly markup (`markup_weight`) or nests deep is rendered as
    escaped plain text instead (`renders_as_plain_text`).
    Results are cached by text, so a case read again costs nothing."""
    return _render_markdown(text or "")


def _plain(text: str) -> Markup:
    return Markup("<p>") + escape(text).replace("\n", Markup("<br>")) + Markup("</p>")


@functools.lru_cache(maxsize=RENDER_CACHE_SIZE)
def _render_markdown(text: str) -> Markup:
    if renders_as_plain_text(text):
        return _plain(text)
    try:
        html = markdown.markdown(text, extensions=list(MARKDOWN_EXTENSIONS),
                                 output_format="html")
    except RecursionError:
        # Nesting deep enough to exhaust the parser (「- - - - …」 by the thousand) is shown
        # as the plain text it is rather than failing the page.
        return _plain(text)
    clean = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )
    return Markup(clean)


def japanese_date(value: str | None, missing: str = "記載なし") -> str:
    """'2024-12-05' → '2024年12月5日'; partial dates ('2024-12', '2024') as far as known."""
    if not value:
        return missing
    parts = str(value)[:10].split("-")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        return str(value)
    return "".join(f"{n}{unit}" for n, unit in zip(numbers, ("年", "月", "日")))


def case_day(case) -> str:
    """The day a case is listed by (kb.cases.CASE_DATE), as shown: the day it happened (or
    was found or published), else 「登録日 …」 — the day the report was first saved — else
    日付不明. ``case`` needs ``case_date`` for the second."""
    day = case.get("occurred_on") or case.get("discovered_on") or case.get("published_on")
    if not day and case.get("case_date"):
        return "登録日 " + japanese_date(case["case_date"])
    return japanese_date(day, "日付不明")


LABELS = {
    "kind": cases.KIND_LABELS,
    "origin": cases.ORIGIN_LABELS,
    "status": cases.STATUS_LABELS,
    "task": cases.TASK_LABELS,
    "incident_type": cases.INCIDENT_TYPE_LABELS,
    "rule_status": cases.RULE_STATUS_LABELS,
    "countermeasure_type": cases.COUNTERMEASURE_TYPE_LABELS,
    "countermeasure_status": cases.COUNTERMEASURE_STATUS_LABELS,
    "role": roles.ROLE_LABELS,
    "factor": reports.FACTOR_LABELS,
    "disclosure": statutory.DISCLOSURE_LABELS,
}


def label(value, vocabulary: str) -> str:
    """The Japanese label of a vocabulary value (the value itself if unknown)."""
    return LABELS.get(vocabulary, {}).get(value, value or "")


_ESCAPED_RUN = re.compile(r"(?:%[89A-Fa-f][0-9A-Fa-f])+")


def _unescape_run(match: re.Match) -> str:
    raw = match.group(0)
    try:
        text = urllib.parse.unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return raw
    # Control, format (a right-to-left override could disguise the address) and space
    # characters stay escaped.
    return "".join(urllib.parse.quote(ch) if _invisible(ch) else ch for ch in text)


def readable_url(url: str) -> str:
    """A URL as a person reads it: percent-escapes of non-ASCII UTF-8 decoded
    (…/%E5%80%8B… → …/個…) and the labels of an internationalised host name (xn--…) that
    are Japanese (kanji, kana, with ASCII letters and digits) shown in that script. Only
    for display: the link keeps the exact URL. Escapes of ASCII characters (%2F, %2B, %26 …)
    stay, so the shown address means what the link means; invalid UTF-8 stays escaped, and
    control, format or space characters are shown escaped whether they came escaped or not.
    A host label in another script (аррӏе, Cyrillic for apple) stays xn--, as browsers show
    look-alikes."""
    if not url:
        return ""
    shown = "".join(urllib.parse.quote(ch) if _invisible(ch) else ch
                    for ch in _ESCAPED_RUN.sub(_unescape_run, url))
    try:
        host = urllib.parse.urlsplit(shown).hostname or ""
        if "xn--" in host:
            shown = shown.replace(host, ".".join(map(_readable_label, host.split("."))), 1)
    except (UnicodeError, ValueError):
        pass
    return shown


def _invisible(ch: str) -> bool:
    # A right-to-left override could disguise the address; a zero-width one hides a part.
    return unicodedata.category(ch)[0] in "CZ"


_JAPANESE = ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH", "HIRAGANA", "KATAKANA",
             "IDEOGRAPHIC ITERATION MARK")


def _readable_label(label: str) -> str:
    if not label.startswith("xn--"):
        return label
    decoded = label.encode("ascii").decode("idna")
    if all((ch.isascii() and (ch.isalnum() or ch == "-"))
           or unicodedata.name(ch, "").startswith(_JAPANESE) for ch in decoded):
        return decoded
    return label


# A text cell starting with one of these is a formula to Excel and LibreOffice
# (OWASP "CSV injection"): 「=HYPERLINK(…)」 typed as a failed sign-in's login id would run
# in the admin's spreadsheet. Tab and CR are included because spreadsheets skip them
# before looking for the formula sign.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _looks_like_formula(value: str) -> bool:
    # Japanese Excel reads full-width 「＝」「＋」「－」「＠」 as their ASCII forms (NFKC), and
    # spreadsheets may skip leading blanks (「 =…」, 「　=…」, a new line) before the sign.
    if value.startswith(FORMULA_STARTS):
        return True
    head = value.lstrip()[:1]
    return bool(head) and unicodedata.normalize("NFKC", head).startswith(FORMULA_STARTS)


def spreadsheet_text(value):
    """A CSV cell that no spreadsheet evaluates: a str starting with a formula character —
    after any blanks, full-width forms included — gets a leading single quote (shown, but
    read as text); numbers and other values unchanged, so a negative int stays a number."""
    if isinstance(value, str) and _looks_like_formula(value):
        return "'" + value
    return value


def excel_csv(header, rows) -> bytes:
    """CSV that Excel opens as it is: UTF-8 with BOM, CRLF line ends, cells quoted by the
    csv module where they hold commas, quotes or new lines, and text cells that a
    spreadsheet would run as a formula neutralised (`spreadsheet_text`). Every CSV the app
    serves is written here."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([spreadsheet_text(cell) for cell in header])
    writer.writerows([spreadsheet_text(cell) for cell in row] for row in rows)
    return buffer.getvalue().encode("utf-8-sig")


def init_app(app) -> None:
    app.add_template_filter(render_markdown, "markdown")
    app.add_template_filter(japanese_date, "jdate")
    app.add_template_filter(case_day, "case_day")
    app.add_template_filter(dates.shown_day, "shown_day")
    app.add_template_filter(dates.office_day, "office_day")
    app.add_template_filter(dates.shown_moment, "shown_moment")
    app.add_template_filter(label, "label")
    app.add_template_filter(readable_url, "readable_url")
    app.jinja_env.globals["LABELS"] = LABELS
