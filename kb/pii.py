"""Personal-data detection and masking: personal data never enters the knowledge base.

``scan`` finds phone numbers (with the area code or the local exchange in brackets too),
e-mail addresses, postal codes, 12-digit individual numbers, street addresses (丁目/番地/号,
or block numbers with hyphens followed by a building and a room), dates of birth and
names followed by an honorific. It errs on the side of flagging: a finding is either masked (＊＊＊) or
confirmed by a reviewer as not personal data before a case is published.

Offsets are into the original text. Full-width digits and letters are matched as their
ASCII forms by folding character by character, which keeps every offset in place; the
many dashes people type between digits (－ − ‐ ー …) fold to "-" the same way.
"""

import re
import unicodedata
from dataclasses import asdict, dataclass

MASK = "＊＊＊"

KIND_LABELS = {
    "phone": "電話番号",
    "email": "メールアドレス",
    "postal_code": "郵便番号",
    "individual_number": "個人番号（12桁）",
    "address": "番地・丁目などの住所",
    "birth_date": "生年月日",
    "name": "敬称付きの氏名",
}

KANJI = r"[\u4e00-\u9fff々〆]"
KATAKANA = r"[\u30a1-\u30fa\u30fc]"
ERA_DATE = r"(?:(?:19|20)\d{2}|(?:明治|大正|昭和|平成|令和|[MTSHR])\s?(?:\d{1,2}|元))"
DATE = (rf"{ERA_DATE}\s?(?:年|[./-])\s?\d{{1,2}}\s?(?:月|[./-])\s?\d{{1,2}}\s?日?")

# An address block (1-2-3 or 12-3), a building name (which names a kind of building), a room.
# The first of three parts is a 丁目 (one or two digits), so 2024-12-05 is not a block.
BLOCK3 = r"(?<![0-9-])[0-9]{1,2}-[0-9]{1,4}-[0-9]{1,4}(?![0-9])"
BLOCK = r"(?<![0-9-])(?:[0-9]{1,2}-[0-9]{1,4}-[0-9]{1,4}|[0-9]{1,4}-[0-9]{1,4})(?![0-9])"
BUILDING_WORDS = ("マンション", "アパート", "ハイツ", "コーポ", "メゾン", "レジデンス", "ハイム",
                  "ハウス", "パレス", "ヒルズ", "テラス", "コート", "シャトー", "ガーデン", "タワー",
                  "ヴィラ", "ビラ", "ビル", "荘", "団地", "住宅", "寮", "棟")
NAME_CHARACTER = r"[\u3041-\u3096\u30a1-\u30fa\u30fc\u4e00-\u9fff々A-Za-z・]"
# Not 住宅課 or 寮務係: an office's name is not a building.
_BUILDING_CHARACTER = rf"(?![課係局部]){NAME_CHARACTER}"
BUILDING = (rf"{_BUILDING_CHARACTER}{{0,12}}?(?:{'|'.join(BUILDING_WORDS)}){_BUILDING_CHARACTER}{{0,12}}?"
            r"(?:[\s　]?(?:[0-9]{1,2}号棟|[A-Z]棟))?")
# A room number, not a count or a floor: "1-2-3 山田ビル 3階" stays a business address.
ROOM = (r"(?:[0-9]{1,4}号室|[0-9]{1,4}号(?!棟)"
        r"|[0-9]{2,4}(?![0-9]|階|F|名|人|件|部|通|枚|個|台|回|世帯|円|時|分|日|月|年|歳|代|%|％|頁|ページ"
        r"|本|戸|冊|点|箇所|か所|ヶ所|カ所|種|組|校|園|軒|棟|km|m|kg))")

PATTERNS = (
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
    ("phone", re.compile(
        r"(?<![\d-])(?:0\d{1,4}-\d{1,4}-\d{3,4}|0[5789]0\d{8}|0\d{9}"
        # 03 1234 5678, 090.1234.5678: spaces or dots, the same between both parts
        r"|(?<![\d.])0\d{1,4}([ .])\d{1,4}\1\d{4}(?![\d.])"
        # +81-90-1234-5678, +81 3 1234 5678, +81(0)3-1234-5678: the country code
        r"|\+81[ -]?(?:\(0\))?[1-9]\d{0,3}[ .-]?\d{1,4}[ .-]?\d{4}"
        # (03)1234-5678, (03) 1234 5678, (0422)12-3456, (03)-1234-5678, (03)12345678
        r"|\(0\d{1,4}\)[ -]?(?:\d{1,4}[ -]?\d{4}|\d{6,8})"
        # 03(1234)5678: the local exchange in brackets
        r"|0\d{1,4} ?\(\d{1,4}\) ?\d{4})(?![\d-])")),
    ("individual_number", re.compile(r"(?<![\d-])\d{4}[- ]?\d{4}[- ]?\d{4}(?![\d-])")),
    ("postal_code", re.compile(r"〒\s?\d{3}-?\d{4}|(?<![\d-])\d{3}-\d{4}(?![\d-])")),
    ("address", re.compile(
        r"[0-9一二三四五六七八九十]+丁目(?:\s?[0-9]+番(?:地)?)?(?:\s?[0-9]+号)?"
        r"|[0-9]+番地(?:の?[0-9]+)?(?:\s?[0-9]+号)?"
        r"|[0-9]+番[0-9]+号"
        # 1-2-3 メゾン中央101号室, 12-3 コーポ山田 201, 1-2-3-405: a block number is an address
        # only with a building and a room after it (or a fourth part): alone, 3-2 is a
        # checklist item, 12-345 a document number.
        rf"|{BLOCK3}-[0-9]{{1,4}}(?![0-9-])"
        rf"|{BLOCK}(?!-)[\s　]?(?:{BUILDING}[\s　]?{ROOM}"
        rf"|{NAME_CHARACTER}{{1,20}}?[\s　]?[0-9]{{1,4}}号室)")),
    ("birth_date", re.compile(
        rf"生年月日\s?[:：は]?\s?{DATE}|{DATE}\s?生(?:まれ)?")),
    ("name", re.compile(
        rf"(?:{KANJI}{{1,6}}|{KATAKANA}{{2,10}})[\s　]?(?:{KANJI}{{1,4}}[\s　]?)?"
        r"(?:様(?![式々])|さん|氏(?!名)|くん|君|ちゃん)")),
)

# Words before an honorific that are not a person's name: roles, groups, relatives.
NOT_NAME_WORDS = {
    "皆", "お客", "客", "各", "同", "両", "貴", "奥", "彼", "神", "王", "仏", "先方", "相手",
    "父", "母", "兄", "姉", "弟", "妹", "祖父", "祖母", "叔父", "叔母", "伯父", "伯母", "子",
    "子供", "子ども", "児童", "生徒", "利用", "お父", "お母", "家族", "ご家族", "本人", "ご本人",
    "御中", "各位", "事業", "委託", "業者", "区長", "市長", "町長", "村長", "知事", "議長",
    "課長", "部長", "係長", "所長", "担当", "宛名", "名義", "源", "某",
}
# …and the ends of common words with 様 that are not names: 仕様(書), 模様, 異様, 同様.
NOT_NAME_ENDINGS = ("者", "員", "民", "方", "先", "人", "様", "氏", "族", "位", "中", "側", "主",
                    "仕", "模", "異", "同")


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int
    text: str

    @property
    def label(self) -> str:
        return KIND_LABELS[self.kind]

    def as_dict(self) -> dict:
        return asdict(self)


# Dashes typed between the parts of a number: hyphens, minus signs, dashes and, by a slip
# of the input method, the katakana long-vowel mark (１ー２ー３).
DASHES = set("‐‑‒–—―−﹣－ーｰ")


def _fold(text: str) -> str:
    """Full-width ASCII → ASCII and a dash between digits → "-", one character for one,
    so offsets stay valid."""
    folded = []
    for char in text:
        normal = unicodedata.normalize("NFKC", char)
        folded.append(normal if len(normal) == 1 and normal.isascii() else char)
    for i, char in enumerate(folded):
        if char in DASHES and 0 < i < len(folded) - 1 and folded[i - 1].isdigit() \
                and folded[i + 1].isascii() and folded[i + 1].isdigit():
            folded[i] = "-"
    return "".join(folded)


def _is_name(candidate: str) -> bool:
    word = re.sub(r"(様|さん|氏|くん|君|ちゃん)$", "", candidate).replace("　", "").strip()
    if word in NOT_NAME_WORDS or word.endswith(NOT_NAME_ENDINGS):
        return False
    return not any(word.endswith(stop) for stop in NOT_NAME_WORDS if len(stop) > 1)


def scan(text: str | None) -> list[Finding]:
    """Findings in ``text``, in order, without overlaps (the longer match wins)."""
    if not text:
        return []
    folded = _fold(text)
    candidates = []
    for kind, pattern in PATTERNS:
        for match in pattern.finditer(folded):
            if kind == "name" and not _is_name(match.group()):
                continue
            candidates.append(Finding(kind, match.start(), match.end(),
                                      text[match.start():match.end()]))
    candidates.sort(key=lambda f: (f.start, -(f.end - f.start)))
    findings, covered_to = [], -1
    for finding in candidates:
        if finding.start >= covered_to:
            findings.append(finding)
            covered_to = finding.end
    return findings


def mask(text: str, start: int, end: int, expected: str) -> str:
    """``text`` with [start, end) replaced by ＊＊＊.

    ``expected`` is the text the finding showed; if the text has moved since (the user
    edited it), the first occurrence of ``expected`` is masked instead. ValueError if it
    is gone.
    """
    if text[start:end] != expected:
        start = text.find(expected)
        if start < 0 or not expected:
            raise ValueError("the text to mask is no longer there")
        end = start + len(expected)
    return text[:start] + MASK + text[end:]


def mask_all(text: str) -> str:
    """``text`` with every finding masked."""
    for finding in reversed(scan(text)):
        text = text[:finding.start] + MASK + text[finding.end:]
    return text
