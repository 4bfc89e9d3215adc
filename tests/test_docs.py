"""The README is part of the product: every command, setting and module is documented."""

from pathlib import Path

import pytest

from kb import cli, config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_quick_start_is_exactly_the_two_commands():
    quick_start = README.split("## Quick start", 1)[1].split("```")[1]
    assert quick_start.split() == ["scripts/run", "scripts/test"]


@pytest.mark.parametrize("command", cli.COMMANDS, ids=lambda c: c.name)
def test_every_command_is_documented(command):
    assert f"flask --app wsgi {command.name}" in README


@pytest.mark.parametrize("name", sorted(config.defaults()))
def test_every_setting_is_documented(name):
    assert f"`KB_{name}`" in README


@pytest.mark.parametrize("module", sorted(
    str(path.relative_to(ROOT)) for path in (ROOT / "kb").rglob("*.py")))
def test_every_module_is_in_the_layout(module):
    layout = README.split("## Layout", 1)[1]
    assert f"\n{module} " in layout


def test_ci_runs_the_readme_test_command():
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
