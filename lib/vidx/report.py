"""Human-readable output for the CLI (rich tables). Machine-readable output is `--json`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

CONSOLE = Console()


def print_embed_report(report: Any) -> None:
    table = Table(title=f"embed run {report.run_id}  model {report.model_id}", show_header=False)
    rows = [
        ("files listed", report.listed), ("new", report.new), ("changed / re-embedded", report.changed),
        ("deleted", report.deleted), ("unchanged (skipped)", report.unchanged),
        ("processed", report.processed), ("ok", report.ok), ("failed", report.failed),
        ("work units", report.units), ("frames", report.frames), ("clips committed", report.clips),
        ("checkpoints (resumed)", f"{report.checkpoints} ({report.resumed_checkpoints})"),
        ("clips versions", report.clips_versions), ("videos versions", report.videos_versions),
        ("wall time", f"{report.wall_s:.1f} s"),
        ("frames/s (wall)", f"{report.frames_per_s:.1f}"),
        ("decode / encode (task s)", f"{report.decode_s:.1f} / {report.encode_s:.1f}"),
    ]
    for key, value in rows:
        table.add_row(key, str(value))
    CONSOLE.print(table)
    for failure in report.failures:
        # escape(): "[corrupt]" and file names with brackets are text, not rich markup
        CONSOLE.print(f"[yellow]failed[/] {escape(failure['uri'])}: {escape('[' + failure['error_class'] + ']')} "
                      f"{escape(failure['error'])}")


def print_build_result(result: Any) -> None:
    if result.up_to_date:
        CONSOLE.print(f"index for {result.model_id} is up to date (clips version {result.table_version})")
        return
    m = result.published.manifest
    CONSOLE.print(f"published index [bold]{m['version']}[/] for {m['model_id']}: {m['count']} vectors, "
                  f"{m['params']['factory']}, nprobe {m['nprobe']}, recall@10 {m['recall_at_10']:.3f}, "
                  f"built in {m['build_seconds']:.1f} s from clips version {m['table_version']}")
    if (m.get("qps") or {}).get("queries_per_second"):
        CONSOLE.print(f"  {m['qps']['queries_per_second']:,.0f} queries/s at nprobe {m['nprobe']} "
                      "(measured once at build)")
    CONSOLE.print(f"  {result.published.uri}")


def _fmt_time(seconds: float) -> str:
    minutes, sec = divmod(seconds, 60)
    return f"{int(minutes)}:{sec:04.1f}"


def print_hits(hits: Sequence[Any], *, title: str) -> None:
    table = Table(title=title)
    for col in ("#", "score", "uri", "start-end", "clip"):
        table.add_column(col)
    for rank, hit in enumerate(hits, 1):
        table.add_row(str(rank), f"{hit.score:.3f}", hit.uri, f"{_fmt_time(hit.start_s)}-{_fmt_time(hit.end_s)}",
                      str(hit.clip_idx))
    CONSOLE.print(table)


def print_moments(moments: Sequence[Any], *, title: str) -> None:
    """`vidx search --moments`: one row per moment, best first."""
    table = Table(title=title)
    for col in ("#", "score", "uri", "start-end", "clips", "best clip"):
        table.add_column(col)
    for rank, m in enumerate(moments, 1):
        table.add_row(str(rank), f"{m.score:.3f}", m.uri, f"{_fmt_time(m.start_s)}-{_fmt_time(m.end_s)}",
                      str(m.n_clips), str(m.best_clip_idx))
    CONSOLE.print(table)


def print_versions(versions: Sequence[dict[str, Any]], *, title: str) -> None:
    """`vidx index list`: one row per version, oldest first, CURRENT marked with *."""
    table = Table(title=title)
    table.add_column("")
    table.add_column("version", no_wrap=True)  # names are copied into `vidx index promote`: never wrap them
    for col in ("vectors", "index", "nprobe", "recall@10", "table v", "MiB"):
        table.add_column(col)
    for v in versions:
        recall = v["recall_at_10"]
        table.add_row("*" if v["current"] else "", v["version"], str(v["count"]),
                      str(v["factory"]), str(v["nprobe"]), "-" if recall is None else f"{recall:.3f}",
                      str(v["table_version"]), f"{v['bytes'] / 2**20:.1f}")
    CONSOLE.print(table)
