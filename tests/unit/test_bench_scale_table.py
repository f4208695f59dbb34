"""The README's scale table is rendered from the committed scale-summary.json (issue 12.4)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.scale_table import SUMMARY, block, main

ROOT = Path(__file__).resolve().parents[2]


def test_readme_scale_table_matches_the_committed_summary():
    assert main(["--check", str(ROOT / "README.md")]) == 0


def test_rendering_shows_every_size_and_growth(tmp_path):
    summary = json.loads(SUMMARY.read_text())
    text = block(summary)
    assert all(f"{n / 1e6:g}M" in text for n in summary["sizes"])
    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- scale-table -->\nold\n<!-- /scale-table -->\nb\n")
    assert main(["--check", str(readme)]) == 1
    assert main(["--readme", str(readme)]) == 0 and main(["--check", str(readme)]) == 0
    assert readme.read_text().startswith("a\n") and readme.read_text().endswith("\nb\n")
