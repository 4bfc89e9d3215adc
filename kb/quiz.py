"""○× statements made from checklist items: the workshop quiz and the self-check questions.

True statements are sentences of the items' guidance as written. A false one is a
guidance sentence with one controlled change, so an answer sheet (or the explanation
after a self-check answer) can show both the changed and the correct sentence.
"""

import re

SWAPS = (
    ("別の職員", "同じ職員"), ("同じ職員", "別の職員"), ("二人", "一人"), ("2人", "1人"),
    ("複数", "一人"), ("BCC", "宛先（To）"), ("施錠", "開けたまま"), ("四半期ごと", "数年に一度"),
    ("年1回", "数年に1回"), ("すぐに", "落ち着いてから後日"), ("事前に", "事後に"),
    ("電源は切らず", "まず電源を切り"), ("先に", "後から"), ("読み上げ", "黙読し"),
    ("外します", "残しておきます"), ("必ず", "なるべく"),
)
NEGATIONS = (("しません。", "します。"), ("ません。", "ます。"), ("します。", "しません。"),
             ("ます。", "ません。"))


def code_order(code: str):
    """Sort key of an item code: "3-10" after "3-2"."""
    return tuple(int(part) if part.isdigit() else 0 for part in code.split("-"))


def sentences(text: str) -> list[str]:
    """The sentences of a guidance text long enough to be a statement (12+ characters)."""
    return [s + "。" for s in re.split(r"。", text or "") if len(s.strip()) >= 12]


def falsify(sentence: str) -> tuple[str, str] | None:
    """(false sentence, what was changed) by one swap, else by flipping the ending."""
    for before, after in SWAPS:
        if before in sentence:
            return sentence.replace(before, after, 1), f"「{before}」を「{after}」に変えています"
    for before, after in NEGATIONS:
        if sentence.endswith(before):
            return sentence[: -len(before)] + after, "文末の肯定と否定を入れ替えています"
    return None


def item_statements(items: list[dict]) -> list[dict]:
    """One statement per item that has guidance, in the order given: {number, statement,
    answer (True for ○), item_code, item_text, section_code, correct, change}. Items
    alternate between a true and a false statement (a false one where a change exists)."""
    quiz = []
    for index, item in enumerate(items):
        found = sentences(item["guidance"])
        if not found:
            continue
        sentence = found[index // 2 % len(found)]
        false = falsify(sentence) if index % 2 else None
        quiz.append({
            "number": len(quiz) + 1, "statement": false[0] if false else sentence,
            "answer": false is None, "item_code": item["code"], "item_text": item["text"],
            "section_code": item.get("section_code", ""),
            "correct": sentence, "change": false[1] if false else "",
        })
    return quiz


def build_quiz(cases: list[dict]) -> list[dict]:
    """○× statements from the checklist items linked to the cases, one per item, in item
    order (see ``item_statements``)."""
    seen, items = set(), []
    for case in cases:
        for item in case["items"]:
            if item["code"] not in seen:
                seen.add(item["code"])
                items.append(item)
    items.sort(key=lambda item: code_order(item["code"]))
    return item_statements(items)
