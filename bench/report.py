"""The README's performance table, rendered from committed bench JSON (so the two cannot drift).

    python -m bench.report bench/results/reference/BENCH.json [--index-scale INDEX.json]   # print it
    python -m bench.report BENCH.json --index-scale INDEX.json --readme README.md          # rewrite README
    python -m bench.report --check README.md                     # exit 1 when README and JSON differ

The README section lies between `<!-- bench-table: PATHS ... -->` and `<!-- /bench-table -->`; PATHS
(relative to the repository root) name the JSON it was rendered from, and a unit test re-renders it.
BENCH.json comes from `make bench` (bench/run.py, format 2), INDEX.json from bench/index_scale.py.
"""
# ruff: noqa: RUF001  (the README's typography: multiplication signs and en dashes on purpose)

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"<!-- bench-table: (?P<paths>[^>]*?) -->\n.*?<!-- /bench-table -->\n", re.DOTALL)
KEYFRAME_ROWS = {"<= 1 s": "— keyframe every ≤ 1 s (phone cameras)",
                 "<= 2 s": "— keyframe every 1–2 s (streaming)",
                 "> 2 s": "— keyframes > 2 s apart (x264 default, 250 frames): nothing to skip, only "
                          "conversion and scaling saved"}


def busy(result: dict[str, Any], cores: int) -> bool:
    """Whether other work shared the machine: more runnable tasks than cores when the run started, or a
    5-minute average at the end well above what the bench itself uses (its threads fill the cores)."""
    start = result.get("load_avg_at_start") or [result.get("load_avg_1m_at_start", 0.0)]
    end = result.get("load_avg_at_end") or [0.0, 0.0, 0.0]
    return bool(start[0] > cores or end[1] > 1.5 * cores)


def _load(result: dict[str, Any]) -> str:
    start = result.get("load_avg_at_start") or [result.get("load_avg_1m_at_start", float("nan"))]
    end = result.get("load_avg_at_end")
    return f"1-min load average {start[0]:.1f} at start" + (f", {end[0]:.1f} at end" if end else "")


def _x(v: float) -> str:
    return f"{v:.2f}×" if v < 10 else f"{v:.1f}×"


def _n(v: float) -> str:
    """A rate with about three significant digits, never in exponent form."""
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def decode_rows(d: dict[str, Any]) -> list[str]:
    lo, hi = d["speedup_range"]
    rows = [f"| **Decode**, 1 frame/s from 30 fps H.264: vidx (decord, seek by timestamp, resize in the decoder) "
            f"vs decoding every frame and keeping one a second (same library, native size), {d['n_files']} files "
            f"| **{_x(d['speedup'])}** pooled: {_n(d['sparse_fps'])} vs {_n(d['full_fps'])} sampled frames/s "
            f"(all frames ÷ all seconds); geometric mean of the per-file ratios {_x(d['speedup_geomean'])} "
            f"[files {_x(lo)}–{_x(hi)}]; {_x(d['speedup_vs_resized'])} pooled against a baseline that also "
            f"resizes in the decoder | ≥ 5× |"]
    files = {f["file"]: f for f in d["files"]}
    for key, label in KEYFRAME_ROWS.items():
        g = d["by_keyframe_interval"].get(key)
        if g is None:
            continue
        each = ", ".join(f"{files[name]['height']}p {_x(files[name]['speedup'])}" for name in g["files"])
        rows.append(f"| {label} | **{_x(g['speedup'])}** pooled ({_n(g['sparse_fps'])} vs {_n(g['full_fps'])} "
                    f"frames/s), geometric mean {_x(g['speedup_geomean'])}; per file: {each} | |")
    return rows


def encode_rows(e: dict[str, Any], e250: dict[str, Any]) -> list[str]:
    lo, hi = e["efficiency_range"]
    lo2, hi2 = e250["efficiency_range"]
    return [f"| **Pipeline efficiency**, {e['model']} {e['precision']}, batch {e['batch']}, {e['frames']} frames: "
            f"vidx's embed path (decode threads + isolated decoders + cross-unit batches + encode) ÷ bare forward "
            f"of prepared tensors; median of {len(e['efficiency_pairs'])} paired runs (each pipeline run over "
            f"the bare run next to it) | **{e['efficiency']:.2f}** on {e['gop_frames']:.0f}-frame GOPs [pairs "
            f"{lo:.2f}–{hi:.2f}; medians {_n(e['pipeline_ips'])} vs {_n(e['bare_ips'])} images/s]; "
            f"{e250['efficiency']:.2f} on {e250['gop_frames']:.0f}-frame GOPs [pairs {lo2:.2f}–{hi2:.2f}] | ≥ 0.90 |"]


def clustering_rows(t: dict[str, Any]) -> list[str]:
    names = list(t["runs"])
    big, tiny = t["runs"][names[0]], t["runs"][names[1]]
    v, w = big["video_archive"], tiny["video_world"]
    c = v["clustering"]
    return [f"| **Token clustering**, {big['model']} defaults (after block {c['layer']}, {c['segments']} segments, "
            f"{c['centers']} medoids), decoded video; clustered and exact path both {big['precision']} (what "
            f"`encode.precision=auto` picks here) | **{_x(v['speedup'])}** encoder images/s "
            f"({_n(v['clustered_ips'])} vs {_n(v['baseline_ips'])}), fidelity cosine **{v['fidelity_cosine']:.3f}** "
            f"(min {v['fidelity_cosine_min']:.3f}), overlap@10 **{v['overlap_at_10']:.3f}** | ≥ 1.3× at ≥ 0.95 |",
            f"| — trained {tiny['model']} {tiny['pretrained']} (block {w['clustering']['layer']}), decoded captioned "
            f"scenes, {tiny['precision']} | {_x(w['speedup'])}, fidelity {w['fidelity_cosine']:.3f}, overlap@10 "
            f"{w['overlap_at_10']:.3f} | |"]


def spark_rows(s: dict[str, Any], tiny: dict[str, Any]) -> list[str]:
    return [f"| **Spark overhead**, `vidx embed` on `local[2]` ÷ the same work in-process (list, probe, plan, "
            f"EmbedTask), {s['videos']} videos, {s['frames']} frames, {s['model']}; each model in a fresh process "
            f"| **{_x(s['overhead'])}** cold ({s['local_wall_s']:.1f} s vs {s['inprocess_wall_s']:.1f} s: new JVM "
            f"and session, new Python workers importing torch and loading the model); **{_x(s['warm_overhead'])}** "
            f"warm, the next run in that process ({s['warm_wall_s']:.1f} s) | ≤ 1.3× |",
            f"| — {tiny['model']} | {_x(tiny['overhead'])} cold ({tiny['local_wall_s']:.1f} s vs "
            f"{tiny['inprocess_wall_s']:.1f} s), {_x(tiny['warm_overhead'])} warm ({tiny['warm_wall_s']:.1f} s) | |"]


def index_row(ix: dict[str, Any]) -> str:
    target = ix["index_config"]["target_recall"]
    note = " **(busy machine)**" if busy(ix, ix["machine"]["cpus"]) else ""
    return (f"| **Index at scale**, `bench/index_scale.py`: {ix['n']:,} × {ix['dim']} clustered vectors, default "
            f"selection, {ix['machine']['cpus']} cores{note} | chose `{ix['factory']}` at nprobe {ix['nprobe']}: "
            f"recall@10 **{ix['recall_at_10']:.3f}** ({ix['recall_at_10_unseen_queries']:.3f} on unseen queries), "
            f"{ix['bytes_per_vector']:.0f} B/vector, built in {ix['build_seconds'] / 60:.1f} min, "
            f"{ix['single_query_qps_1_thread']:,.0f} queries/s on one thread | recall@10 ≥ {target} |")


def header(r: dict[str, Any], paths: list[str]) -> list[str]:
    m = r["machine"]
    chose = ", ".join(f"{p} for {name}" for name, p in r["precision"]["auto_chose"].items())
    lines = [f"Measured with `make bench` on {m['cores']} cores, {m['cpu']} "
             f"({'with' if m['bf16_cpu'] else 'without'} AVX-512 BF16), {'a GPU' if m['cuda'] else 'no GPU'}, "
             f"Python {m['python']}, torch {m['torch']}, {r['started_at'][:10]} ({_load(r)}); "
             f"`encode.precision=auto` chose {chose}. Rendered by `python -m bench.report` from "
             + ", ".join(f"`{p}`" for p in paths) + "."]
    if busy(r, m["cores"]):
        lines += ["", f"**Measured on a busy machine** ({_load(r)} on {m['cores']} cores): other work shared the "
                      "CPUs, so these timings are not representative. Re-run `make bench` on an idle machine."]
    return lines


def render(result: dict[str, Any], index: dict[str, Any] | None = None, *,
           paths: list[str] | None = None) -> str:
    """The Markdown block (header, then the table) for one bench result and an optional index-scale result."""
    if result.get("format") != 2:
        raise ValueError("bench.report renders bench/run.py format 2 results (pooled, paired); re-run make bench")
    rows = ["| what | measured | target |", "|---|---|---|",
            *decode_rows(result["decode"]), *encode_rows(result["encode"], result["encode_gop250"]),
            *clustering_rows(result["token_clustering"]), *spark_rows(result["spark"], result["spark_vidx_tiny"])]
    if index is not None:
        rows.append(index_row(index))
    return "\n".join([*header(result, paths or []), "", *rows]) + "\n"


def render_files(paths: list[str]) -> str:
    """render() for [bench JSON, optional index-scale JSON], paths relative to the repository root."""
    data = [json.loads((ROOT / p).read_text()) for p in paths]
    return render(data[0], data[1] if len(data) > 1 else None, paths=paths)


def block(paths: list[str]) -> str:
    return f"<!-- bench-table: {' '.join(paths)} (python -m bench.report; do not edit) -->\n" \
           f"{render_files(paths)}<!-- /bench-table -->\n"


def readme_block(text: str) -> tuple[str, list[str]]:
    """(the README's rendered section as it stands, the JSON paths its marker names)."""
    found = BLOCK.search(text)
    if found is None:
        raise ValueError("no <!-- bench-table: ... --> section in the README")
    return found.group(0), [p for p in found.group("paths").split() if p.endswith(".json")]


def _relative(path: str) -> str:
    return str(Path(path).resolve().relative_to(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", nargs="?", help="bench/run.py result JSON")
    ap.add_argument("--index-scale", help="bench/index_scale.py result JSON")
    ap.add_argument("--readme", help="rewrite this README's bench-table section")
    ap.add_argument("--check", metavar="README", help="exit 1 when this README's section differs from its JSON")
    args = ap.parse_args(argv)
    if args.check:
        current, paths = readme_block(Path(args.check).read_text())
        if current != block(paths):
            print(f"{args.check}: the performance table differs from {' '.join(paths)}", file=sys.stderr)
            return 1
        return 0
    if not args.bench:
        ap.error("give a bench JSON (or --check README)")
    paths = [_relative(p) for p in [args.bench, args.index_scale] if p]
    if not args.readme:
        print(render_files(paths), end="")
        return 0
    readme = Path(args.readme)
    text = readme.read_text()
    current, _ = readme_block(text)
    tmp = readme.with_name(readme.name + ".tmp")
    tmp.write_text(text.replace(current, block(paths)))
    os.replace(tmp, readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
