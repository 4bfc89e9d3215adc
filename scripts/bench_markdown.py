#!/usr/bin/env python
"""Worst Markdown render time per pathological input, at the longest length a field takes.

Each input (「[」 repeated, nested lists and quotes, emphasis runs, backticks, link-reference
chains, tables …) is built at the largest length a rendered field accepts (何が起きたか:
4,000 characters; the others 2,000) and rendered through ``kb.rendering.render_markdown``
with its cache cleared, several times. Past the guards in kb/rendering.py such text is shown
as plain text, so each input is also measured at its worst still rendered as Markdown: as much
of the input as the guards let through, the rest of the field filled with ordinary Japanese.
Printed: the worst wall-clock and CPU time per input, the worst whole case page (the four
rendered fields of a near-miss or an incident at their limits, all filled with the same
input), and a cached render. Wall-clock time counts other processes sharing the CPU.

    .venv/bin/python scripts/bench_markdown.py [--repeat 3] [--length 4000]
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kb import rendering, reports  # noqa: E402

# The rendered fields of a case page and their limits (see templates/cases/show.html).
PAGE_FIELDS = {
    "near_miss": ("summary", "how_found", "potential_outcome", "prevention_idea"),
    "incident": ("summary", "how_found", "immediate_action", "secondary_damage"),
}


def repeat(unit: str, length: int) -> str:
    return (unit * (length // len(unit) + 1))[:length]


def inputs(length: int) -> dict[str, str]:
    """Name → builder of a text of ``length`` characters."""
    jp = "封入前に宛名を確認した。"
    return {
        "[ × N": lambda n: repeat("[", n),
        "* × N": lambda n: repeat("*", n),
        "_ × N": lambda n: repeat("_", n),
        "< × N": lambda n: repeat("<", n),
        "` × N": lambda n: repeat("`", n),
        "[ then ]": lambda n: "[" * (n // 2) + "]" * (n - n // 2),
        "[` × N": lambda n: repeat("[`", n),
        "あ[ × N": lambda n: repeat("あ[", n),
        "([ × N": lambda n: repeat("([", n),
        "![ × N": lambda n: repeat("![", n),
        "[x]( × N": lambda n: repeat("[x](", n),
        "*a × N": lambda n: repeat("*a", n),
        "***a × N": lambda n: repeat("***a", n),
        "*_ × N": lambda n: repeat("*_", n),
        "<a × N": lambda n: repeat("<a", n),
        "<http:// × N": lambda n: repeat("<http://", n),
        "&# × N": lambda n: repeat("&#", n),
        "\\ × N": lambda n: repeat("\\", n),
        "`a × N": lambda n: repeat("`a", n),
        "`\\n × N": lambda n: repeat("`\n", n),
        "*\\n × N": lambda n: repeat("*\n", n),
        "- on one line": lambda n: repeat("- ", n),
        "> on one line": lambda n: repeat("> ", n),
        "1. on one line": lambda n: repeat("1. ", n),
        "nested list lines": lambda n: "".join("  " * i + "- x\n" for i in range(n))[:n],
        "nested quote lines": lambda n: "".join(">" * i + " x\n" for i in range(n))[:n],
        "link reference defs": lambda n: repeat("[a]: /x\n", n),
        "link reference uses": lambda n: repeat("[a][b]", n),
        "reference chain": lambda n: "".join(f"[r{i}]: /{i}\n" for i in range(n))[:n // 2]
        + repeat("[x][r1] ", n - n // 2),
        "table rows": lambda n: "|a|b|\n|-|-|\n" + repeat("|x|y|\n", n - 12),
        "| × N lines": lambda n: repeat("|a\n", n),
        "=\\n × N (setext underlines)": lambda n: repeat("=\n", n),
        "a\\n-\\n × N (setext headings)": lambda n: repeat("a\n-\n", n),
        "---\\n × N (rules)": lambda n: repeat("---\n", n),
        "a\\n\\n × N (short paragraphs)": lambda n: repeat("a\n\n", n),
        "a\\n × N (short lines)": lambda n: repeat("a\n", n),
        "ordinary Japanese": lambda n: repeat(jp, n),
        "ordinary Markdown": lambda n: repeat(
            f"**{jp}**\n\n- {jp}\n- [出典](https://example.jp/a)\n\n> {jp}\n\n", n),
    }


PADDING = "封入前に宛名を確認した。"


def at_the_guard(build, length: int) -> str:
    """As much of the input as is still rendered as Markdown, padded to ``length``."""
    low, high = 0, length
    while low < high:
        middle = (low + high + 1) // 2
        if rendering.renders_as_plain_text(build(middle) + repeat(PADDING, length - middle)):
            high = middle - 1
        else:
            low = middle
    return build(low) + repeat(PADDING, length - low)


def render_time(texts: list[str], repeat_count: int) -> tuple[float, float]:
    """The worst (wall, CPU) seconds of rendering ``texts`` with an empty cache."""
    worst_wall = worst_cpu = 0.0
    for _ in range(repeat_count):
        rendering._render_markdown.cache_clear()
        wall, cpu = time.perf_counter(), time.process_time()
        for text in texts:
            rendering.render_markdown(text)
        worst_wall = max(worst_wall, time.perf_counter() - wall)
        worst_cpu = max(worst_cpu, time.process_time() - cpu)
    return worst_wall, worst_cpu


def show(results) -> None:
    for (wall, cpu), name in sorted(results, reverse=True):
        print(f"  {wall * 1000:8.1f} ms wall {cpu * 1000:8.1f} ms CPU  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--length", type=int, default=reports.TEXT_LIMITS["summary"])
    parser.add_argument("--top", type=int, default=10, help="page results to print")
    options = parser.parse_args()
    builders = inputs(options.length)
    print(f"one field of {options.length:,} characters, worst of {options.repeat} renders, cache cleared")
    results = []
    for name, build in builders.items():
        text = build(options.length)
        label = f"{name}{'  (shown as plain text)' if rendering.renders_as_plain_text(text) else ''}"
        results.append((render_time([text], options.repeat), label))
        results.append((render_time([at_the_guard(build, options.length)], options.repeat),
                        f"{name}, the most still rendered as Markdown"))
    show(results)
    print("whole case page, every rendered field at its limit, cache cleared (worst pages)")
    pages = []
    for name, build in builders.items():
        for kind, fields in PAGE_FIELDS.items():
            for how, make in (("whole", lambda n: build(n)),
                              ("at the guard", lambda n: at_the_guard(build, n))):
                texts = [make(reports.TEXT_LIMITS[field]) for field in fields]
                pages.append((render_time(texts, options.repeat), f"{name} ({kind}, {how})"))
    show(sorted(pages, reverse=True)[:options.top])
    text = builders["ordinary Markdown"](options.length)
    rendering.render_markdown(text)
    start = time.perf_counter()
    rendering.render_markdown(text)
    print(f"cached render: {(time.perf_counter() - start) * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
