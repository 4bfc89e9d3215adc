"""Statutory clocks for incidents (個人情報保護法 第68条, 行政機関等の漏えい等報告).

An incident is 報告対象事態 when any of these holds: 要配慮個人情報 is involved; 財産的
被害が生じるおそれ; 不正の目的をもって行われたおそれ; 本人の数が100人を超える; or
条例要配慮個人情報 is involved. The 速報 is due promptly (here: within 5 days of the day
the incident became known) and the 確報 within 30 days (60 when done for an unlawful
purpose). The day the incident became known is the discovery date.
"""

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta

PRELIM_DAYS = 5
FINAL_DAYS = 30
FINAL_DAYS_UNLAWFUL = 60
AFFECTED_THRESHOLD = 100

DISCLOSURE_LABELS = {"individual": "個別公表", "batch": "一括公表", "none": "非公表"}
DISCLOSURE_URL_LIMIT = 500


@dataclass(frozen=True)
class Assessment:
    reportable: bool
    reasons: list[str] = field(default_factory=list)
    prelim_due: date | None = None
    final_due: date | None = None
    prelim_done: bool = False
    final_done: bool = False

    def overdue(self, today: date) -> list[str]:
        """Which reports ('速報', '確報') are past their due date and not yet made."""
        late = []
        if self.prelim_due and not self.prelim_done and today > self.prelim_due:
            late.append("速報")
        if self.final_due and not self.final_done and today > self.final_due:
            late.append("確報")
        return late

    @property
    def next_due(self) -> date | None:
        if self.prelim_due and not self.prelim_done:
            return self.prelim_due
        if self.final_due and not self.final_done:
            return self.final_due
        return None


def _parse(value) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except (TypeError, ValueError):
        return None


def assess(case: dict) -> Assessment:
    """Whether an incident must be reported, why, and when the reports are due."""
    if case.get("kind") != "incident":
        return Assessment(False)
    reasons = []
    if case.get("sensitive_data"):
        reasons.append("要配慮個人情報が含まれる")
    if case.get("property_damage_risk"):
        reasons.append("財産的被害が生じるおそれがある")
    if case.get("unlawful_purpose_risk"):
        reasons.append("不正の目的をもって行われたおそれがある")
    count = case.get("affected_count")
    if isinstance(count, int) and count > AFFECTED_THRESHOLD:
        reasons.append(f"本人の数が{AFFECTED_THRESHOLD}人を超える（{count:,}人）")
    if case.get("ordinance_sensitive"):
        reasons.append("条例要配慮個人情報が含まれる")
    if not reasons:
        return Assessment(False)
    discovered = _parse(case.get("discovered_on"))
    final_days = FINAL_DAYS_UNLAWFUL if case.get("unlawful_purpose_risk") else FINAL_DAYS
    return Assessment(
        True, reasons,
        prelim_due=discovered + timedelta(days=PRELIM_DAYS) if discovered else None,
        final_due=discovered + timedelta(days=final_days) if discovered else None,
        prelim_done=bool(case.get("prelim_reported_on")),
        final_done=bool(case.get("final_reported_on")),
    )


def check_disclosure_url(value: str, errors: dict) -> str | None:
    """The public address of a 公表 as stored (None when empty), or None with a message in
    ``errors["disclosure_url"]``: an http(s) URL without spaces or invisible (control,
    format) characters, at most 500 characters — it becomes the 出典 link of the exported
    case on other municipalities' pages."""
    url = (value or "").strip()
    if not url:
        return None
    if len(url) > DISCLOSURE_URL_LIMIT:
        errors["disclosure_url"] = [f"公表のURLは{DISCLOSURE_URL_LIMIT}文字以内にしてください。"]
        return None
    if any(unicodedata.category(ch)[0] == "C" for ch in url):
        # A right-to-left override or a zero-width character makes the shown address lie.
        errors["disclosure_url"] = ["公表のURLに見えない文字（文字の向きを変える制御文字など）が"
                                    "含まれています。ブラウザのアドレス欄からそのまま貼り付けてください。"]
        return None
    if not re.fullmatch(r"https?://[^\s<>\"']+", url) \
            or not re.match(r"https?://[^/?#\s]+", url):
        errors["disclosure_url"] = ["公表のURLは http:// か https:// で始まるURLを、"
                                    "ブラウザのアドレス欄からそのまま貼り付けてください。"]
        return None
    if "@" in re.match(r"https?://([^/?#]*)", url).group(1):
        # https://www.city.example.lg.jp@evil.example/ reads as the city's page but goes to
        # evil.example: a public notice never has a user part.
        errors["disclosure_url"] = ["公表のURLに「@」の前の部分（ユーザー名）は使えません。"
                                    "公表したページのアドレスをそのまま貼り付けてください。"]
        return None
    return url
