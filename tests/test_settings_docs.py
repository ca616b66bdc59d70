"""Every setting is documented in the three places people look: ``--help``,
README's configuration table and ``deploy/.env.example``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bot.config import VARIABLES

ROOT = Path(__file__).resolve().parent.parent
_NAME = r"[A-Z][A-Z0-9_]*"


def _help_names() -> set[str]:
    out = subprocess.run([sys.executable, "-m", "bot", "--help"], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    table = out.split("Configuration", 1)[1]
    return set(re.findall(rf"^  ({_NAME})  ", table, flags=re.MULTILINE))


def _readme_names() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(rf"`({_NAME})`", row.split("|")[1])}


def _env_example_names() -> set[str]:
    text = (ROOT / "deploy" / ".env.example").read_text(encoding="utf-8")
    return set(re.findall(rf"^#? ?({_NAME})=", text, flags=re.MULTILINE))


def _read_names() -> set[str]:
    """The variables ``Settings.from_env`` reads."""
    source = (ROOT / "bot" / "config.py").read_text(encoding="utf-8")
    return set(re.findall(rf"\b(?:get|opt)\(\"({_NAME})\"", source))


def test_help_readme_and_env_example_name_every_setting() -> None:
    places = {"python -m bot --help": _help_names(), "README.md's configuration table": _readme_names(),
              "deploy/.env.example": _env_example_names()}
    every = set().union(*places.values()) | {v.name for v in VARIABLES} | _read_names()
    missing = [f"{name} is missing from {where}" for where, names in places.items() for name in sorted(every - names)]
    assert not missing, "; ".join(missing)
