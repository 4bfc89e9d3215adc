"""Dates typed into forms the Japanese way, and how date fields show them.

Every date field of the app is a text field (not the browser's date picker, which shows
mm/dd/yyyy in an English-language browser), so what people type is read here:
2026/12/01, 2026-12-01, 2026.12.1, 2026年12月1日, 令和8年12月1日, R8.12.1, 平成17年4月1日,
full-width digits and separators alike. What is stored stays ISO (``YYYY-MM-DD``, and
``YYYY-MM-DDTHH:MM`` for a date and time); fields show it as ``2026/12/01`` and
``2026/12/01 09:00``.
"""

import re
import unicodedata
from datetime import date, datetime, timedelta, timezone

# The office's clock: Japan Standard Time (no daylight saving), whatever zone the server
# runs in — a server on UTC would otherwise open campaigns nine hours late and call this
# morning's date "the future" until 9:00.
OFFICE_TZ = timezone(timedelta(hours=9), "JST")

DAY_MESSAGE = "日付は 2026/12/01 のように入力してください（2026年12月1日、令和8年12月1日 も使えます）。"
MOMENT_MESSAGE = "日時は 2026/12/01 09:00 のように、日付と時刻を入力してください。"
# The first year a ward office's record plausibly falls in: a typo such as 0226 is refused
# rather than stored as a real but absurd date (a far future year is the fields' business).
FIRST_YEAR = 1900
# 和暦: (the western year before year 1, the era's first day, its last day).
ERAS = {
    "令和": (2018, date(2019, 5, 1), None),
    "平成": (1988, date(1989, 1, 8), date(2019, 4, 30)),
}
ERA_LETTERS = {"r": "令和", "h": "平成"}
# Dashes NFKC leaves alone but that people (and IMEs) type between the parts of a date.
DASHES = str.maketrans({c: "-" for c in "‐‑‒–—―−ー－"})

_WESTERN = re.compile(r"(\d{4})([-/.年])(\d{1,2})([-/.月])(\d{1,2})日?")
_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})")
_ERA = re.compile(r"(令和|平成|r|h)(\d{1,2}|元)[-/.年](\d{1,2})[-/.月](\d{1,2})日?")
_TIME = (r"(?P<ampm>午前|午後)?(?P<hour>\d{1,2})"
         r"(?::(?P<minute>\d{2})(?::\d{2})?|時(?:(?P<minutes>\d{1,2})分|(?P<half>半))?)")
_MOMENT = re.compile(r"(?P<day>.+?)(?:\s*t\s*|\s+|(?<=日)\s*)" + _TIME)
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_MOMENT = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::\d{2})?")


class DateError(ValueError):
    """What was typed is not a day (or a moment) that exists; ``str()`` is the Japanese
    message to show beside the field."""


def _fold(text) -> str:
    return unicodedata.normalize("NFKC", str(text or "")).translate(DASHES).strip().lower()


def parse_day(text) -> str | None:
    """The ISO day (``YYYY-MM-DD``) of what was typed into a date field.

    Accepts 2026-12-01, 2026/12/01, 2026/1/5, 2026.12.1, 2026年12月1日, 20261201,
    令和8年12月1日 (元年 too), R8.12.1, 平成17年4月1日, H17.4.1, in full- or half-width,
    with blanks around or between the parts; a ``date`` is returned as ISO. Blank (or None)
    is None. Anything else raises DateError: another shape (12/01/2026 included: which
    part is the month is a guess), a day that does not exist (2026/02/30), a year before
    1900, or an era day outside its era (令和1年4月1日 was 平成31年).
    """
    if isinstance(text, date):
        return text.isoformat()
    return _day(re.sub(r"\s+", "", _fold(text)), DAY_MESSAGE)


def _day(folded: str, how: str) -> str | None:
    if not folded:
        return None
    era = None
    if match := _WESTERN.fullmatch(folded):
        year, month, day = int(match[1]), int(match[3]), int(match[5])
    elif match := _COMPACT.fullmatch(folded):
        year, month, day = int(match[1]), int(match[2]), int(match[3])
    elif match := _ERA.fullmatch(folded):
        era = ERA_LETTERS.get(match[1], match[1])
        offset, first, last = ERAS[era]
        year = offset + (1 if match[2] == "元" else int(match[2]))
        month, day = int(match[3]), int(match[4])
    else:
        raise DateError(how)
    if year < FIRST_YEAR:
        raise DateError(how)
    try:
        parsed = date(year, month, day)
    except ValueError:
        raise DateError(f"{year}年{month}月{day}日は存在しない日付です。{how}") from None
    if era and not (first <= parsed and (last is None or parsed <= last)):
        raise DateError(f"{era}{match[2]}年{month}月{day}日は{era}の期間にありません"
                        f"（{parsed.year}年{month}月{day}日のことなら、そう入力してください）。")
    return parsed.isoformat()


def parse_moment(text) -> str | None:
    """The ISO moment (``YYYY-MM-DDTHH:MM``) of what was typed into a date-and-time field.

    A day as ``parse_day`` reads it, then a blank or ``T`` (none needed after 日), then a
    time: 9:00, 09:00, 09:00:00 (seconds dropped), 9時, 9時30分, 9時半, 午前9時, 午後3時.
    Blank (or None) is None. A day without a time, or a time that does not exist (25:00),
    raises DateError; so does whatever ``parse_day`` refuses.
    """
    folded = _fold(text)
    if not folded:
        return None
    match = _MOMENT.fullmatch(folded)
    if not match:
        try:
            _day(re.sub(r"\s+", "", folded), MOMENT_MESSAGE)
        except DateError:
            raise DateError(MOMENT_MESSAGE) from None
        # A day alone: which time was meant (the start of the day? office hours?) is a
        # guess that would open or close a campaign at the wrong moment.
        raise DateError("時刻も入力してください（例：2026/12/01 09:00）。")
    day = _day(re.sub(r"\s+", "", match["day"]), MOMENT_MESSAGE)
    hour = int(match["hour"])
    minute = 30 if match["half"] else int(match["minute"] or match["minutes"] or 0)
    if match["ampm"]:
        if hour > 12:
            raise DateError(MOMENT_MESSAGE)
        hour = hour % 12 + (12 if match["ampm"] == "午後" else 0)
    if hour > 23 or minute > 59:
        raise DateError(f"{hour}時{minute}分という時刻はありません。{MOMENT_MESSAGE}")
    return f"{day}T{hour:02d}:{minute:02d}"


def shown_day(value) -> str:
    """How a date field shows a stored ISO day: 2026-12-01 → 2026/12/01.

    None is ''; anything that is not an ISO day (what someone typed into a form that is
    shown again with an error) is shown exactly as it is, so nothing typed is lost.
    """
    if value is None:
        return ""
    if isinstance(value, date):
        value = value.isoformat()
    text = str(value)
    if _ISO_DAY.fullmatch(text):
        try:
            date.fromisoformat(text)
        except ValueError:
            return text
        return text.replace("-", "/")
    return text


def shown_moment(value) -> str:
    """How a date-and-time field shows a stored moment: 2026-12-01T09:00 → 2026/12/01 09:00.

    None is ''; anything else that is not an ISO moment is shown exactly as it is.
    """
    if value is None:
        return ""
    text = str(value)
    match = _ISO_MOMENT.fullmatch(text)
    if not match:
        return text
    return f"{match[1]}/{match[2]}/{match[3]} {match[4]}:{match[5]}"


def office_day(stamp) -> str:
    """The office's day (ISO) of a stored UTC timestamp: 2026-11-30T16:30:00+00:00 is
    2026-12-01 in the office, which its first ten characters would not say. A value that is
    not a timestamp comes back as its first ten characters; None as ''."""
    if not stamp:
        return ""
    try:
        return in_office_time(datetime.fromisoformat(str(stamp))).date().isoformat()
    except ValueError:
        return str(stamp)[:10]


def office_now() -> datetime:
    """Now on the office's clock (aware, JST)."""
    return datetime.now(OFFICE_TZ)


def office_today() -> date:
    """Today on the office's clock."""
    return office_now().date()


def in_office_time(moment: datetime) -> datetime:
    """``moment`` on the office's clock; a naive datetime is taken as office time already."""
    return moment.replace(tzinfo=OFFICE_TZ) if moment.tzinfo is None else moment.astimezone(OFFICE_TZ)
