"""Markdown → sanitised HTML: the only place user text becomes markup.

Python-Markdown renders, nh3 (ammonia) removes everything outside a small allow-list,
so a report cannot carry script, event handlers, styles or javascript: links.
"""

import csv
import io

import markdown
import nh3
from markupsafe import Markup, escape

from kb import cases, reports, roles, statutory

ALLOWED_TAGS = {
    "p", "br", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li",
    "h3", "h4", "h5", "h6", "hr", "a", "table", "thead", "tbody", "tr", "th", "td",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}
MARKDOWN_EXTENSIONS = ("tables", "sane_lists", "nl2br")


def render_markdown(text: str | None) -> Markup:
    """Safe HTML for a Markdown text; links get rel="noopener noreferrer"."""
    try:
        html = markdown.markdown(text or "", extensions=list(MARKDOWN_EXTENSIONS),
                                 output_format="html")
    except RecursionError:
        # Nesting deep enough to exhaust the parser (「- - - - …」 by the thousand) is shown
        # as the plain text it is rather than failing the page.
        return Markup("<p>") + escape(text).replace("\n", Markup("<br>")) + Markup("</p>")
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


def excel_csv(header, rows) -> bytes:
    """CSV that Excel opens as it is: UTF-8 with BOM, CRLF line ends, cells quoted by the
    csv module where they hold commas, quotes or new lines."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8-sig")


def init_app(app) -> None:
    app.add_template_filter(render_markdown, "markdown")
    app.add_template_filter(japanese_date, "jdate")
    app.add_template_filter(label, "label")
    app.jinja_env.globals["LABELS"] = LABELS
