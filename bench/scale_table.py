"""The README's scale-rehearsal table, rendered from the committed bench/results/scale-summary.json.

    python -m bench.scale_table --readme README.md      # rewrite the README section
    python -m bench.scale_table --check README.md       # exit 1 when README and JSON differ

The section lies between `<!-- scale-table -->` and `<!-- /scale-table -->`.
"""

# ruff: noqa: RUF001  (the README's typography: multiplication signs on purpose)
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

SUMMARY = Path(__file__).parent / "results" / "scale-summary.json"
START, END = "<!-- scale-table -->", "<!-- /scale-table -->"
WHAT = {
    "checkpoint": "embed checkpoint commit, 100 changed videos",
    "validate": "`vidx validate` (streamed groups + GX)",
    "build-index": "`vidx build-index` (distributed, `local[2]`)",
    "sql": "`vidx sql`: aggregate + nearest-neighbour query",
    "serve": "`vidx serve` start + 1,000 queries (client process)",
    "optimize": "`vidx tables optimize`",
}


def _sizes(sizes: list[int]) -> list[str]:
    return [f"{n / 1e6:g}M" for n in sizes]


def render(summary: dict[str, Any]) -> str:
    sizes = _sizes(summary["sizes"])
    span = f"{sizes[-1]} ÷ {sizes[0]}"
    head = (f"| stage | driver peak RSS, MB ({' / '.join(sizes)}) | RSS growth {span} "
            f"| wall s ({' / '.join(sizes)}) | wall growth {span} |")
    rows = [head, "|---|---|---|---|---|"]
    for stage, what in WHAT.items():
        e = summary["stages"].get(stage)
        if e is None:
            continue
        rss = " / ".join(f"{v:,.0f}" for v in e["peak_rss_mb"])
        wall = " / ".join(f"{v:,.0f}" for v in e["wall_s"])
        extra = ""
        if stage == "build-index":
            extra = " (index " + " / ".join(f"{v:,.0f}" for v in e["index_mb"]) + " MB)"
        if stage == "serve":
            extra = " (server " + " / ".join(f"{v:,.0f}" for v in e["server_peak_rss_mb"]) + " MB)"
        rows.append(f"| {what} | {rss}{extra} | **{e.get('rss_growth', 1.0):.2f}×** | {wall} "
                    f"| {e.get('wall_growth', 1.0):.2f}× |")
    return "\n".join(rows)


def block(summary: dict[str, Any]) -> str:
    return f"{START}\n{render(summary)}\n{END}"


def _pattern() -> re.Pattern[str]:
    return re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--summary", default=str(SUMMARY))
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--readme", help="rewrite this README's section")
    group.add_argument("--check", help="exit 1 when this README's section differs from the JSON")
    args = ap.parse_args(argv)
    want = block(json.loads(Path(args.summary).read_text()))
    path = Path(args.readme or args.check)
    text = path.read_text()
    found = _pattern().search(text)
    if found is None:
        print(f"{path}: no {START} ... {END} section", file=sys.stderr)
        return 1
    if args.check:
        same = found.group(0) == want
        if not same:
            print(f"{path}: the scale table differs from {args.summary}; run python -m bench.scale_table "
                  f"--readme {path}", file=sys.stderr)
        return 0 if same else 1
    path.write_text(text[:found.start()] + want + text[found.end():])
    return 0


if __name__ == "__main__":
    sys.exit(main())
