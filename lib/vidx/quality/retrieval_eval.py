"""`vidx eval`: does text search find the right clip? Recall@K against a ground-truth file.

Every caption of the truth file is one text query, run through the real query path: the query
encoder named in the published index's manifest, the published index (`vidx.serve.query.Searcher`)
and, for comparison, an exact brute-force search over the clip vectors of the Delta table version
the index was built from. The gap between the two is what the index loses; what exact search
misses is the model's fault. A hit is a clip of the right video that overlaps the scene's time
range; its temporal precision is the IoU of the clip's and the scene's [start, end).

Truth files: `vidx.synth.make_captioned_archive` and `make_sample_archive` both write
`{"videos": [{"path" | "uri", "scenes": [{"start_s", "end_s", "caption", ...}]}]}` (paths relative
to the truth file); a flat `{"scenes": [{"uri", "start_s", "end_s", "caption"}]}` works too.
Scenes tagged `combo` ("seen"/"unseen", or computed from their colour and shape with the file's
attribute split) are also reported by group.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidx.encode.embedder import encode_texts
from vidx.errors import VidxError
from vidx.index.from_table import load_clips
from vidx.serve.query import Searcher
from vidx.storage import is_local, normalize_uri
from vidx.synth.world import AttributeSplit

LOG = logging.getLogger(__name__)

DEFAULT_KS = (1, 5, 10)
_EPS = 1e-6


@dataclass(frozen=True)
class TruthScene:
    uri: str
    start_s: float
    end_s: float
    caption: str
    combo: str = "unknown"   # "seen" / "unseen" attribute combination, when known


@dataclass(frozen=True)
class Query:
    caption: str
    combo: str
    targets: tuple[TruthScene, ...]   # every scene with this caption (normally one)


@dataclass
class GroupMetrics:
    n: int
    recall: dict[int, float]
    median_rank: float | None       # None: more than half the queries not found within the searched depth
    mean_iou: float | None          # temporal IoU of the first right clip, over queries hit within max(k)

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "recall": {str(k): v for k, v in self.recall.items()},
                "median_rank": self.median_rank, "mean_iou": self.mean_iou}


@dataclass
class EvalReport:
    model_id: str
    index_version: str
    table_version: int
    index_kind: str
    n_clips: int
    ks: tuple[int, ...]
    groups: dict[str, dict[str, GroupMetrics]] = field(default_factory=dict)  # group -> {"exact", "index"}
    missing_videos: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "index_version": self.index_version,
                "table_version": self.table_version, "index_kind": self.index_kind, "n_clips": self.n_clips,
                "ks": list(self.ks), "missing_videos": self.missing_videos,
                "groups": {g: {s: m.as_dict() for s, m in by.items()} for g, by in self.groups.items()}}

    def recall(self, group: str, search: str, k: int) -> float:
        return self.groups[group][search].recall[k]


def _uri_key(uri: str) -> str:
    return normalize_uri(uri) if is_local(uri) else uri.rstrip("/")


def _combo(scene: dict[str, Any], split: AttributeSplit) -> str:
    if scene.get("combo") in ("seen", "unseen"):
        return str(scene["combo"])
    if "color" in scene and "shape" in scene:
        return split.combo(str(scene["color"]), str(scene["shape"]))
    return "unknown"


def load_truth(path: str | Path) -> list[TruthScene]:
    """Scenes of a truth file (see the module doc), with video locations as absolute uris."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VidxError(f"cannot read truth file {path}: {exc}; pass the truth.json written with the archive") from exc
    split = AttributeSplit.from_dict(data["split"]) if "split" in data else AttributeSplit()
    rows: list[tuple[str, dict[str, Any]]] = []
    for video in data.get("videos", []):
        where = video.get("uri") or str(path.parent / video["path"])
        rows += [(where, s) for s in video.get("scenes", [])]
    rows += [(s["uri"], s) for s in data.get("scenes", [])]
    try:
        scenes = [TruthScene(_uri_key(u), float(s["start_s"]), float(s["end_s"]), str(s["caption"]),
                             _combo(s, split)) for u, s in rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise VidxError(f"truth file {path}: every scene needs uri/path, start_s, end_s and caption ({exc})") from exc
    if not scenes:
        raise VidxError(f"truth file {path} holds no scenes")
    return scenes


def queries_from(scenes: Sequence[TruthScene]) -> list[Query]:
    """One query per distinct caption; every scene with that caption is a right answer."""
    by_caption: dict[str, list[TruthScene]] = {}
    for scene in scenes:
        by_caption.setdefault(scene.caption, []).append(scene)
    dupes = sum(len(v) > 1 for v in by_caption.values())
    if dupes:
        LOG.warning("%d captions occur in more than one scene; any of them counts as a hit", dupes)
    return [Query(c, v[0].combo, tuple(v)) for c, v in by_caption.items()]


def overlap_iou(a_start: float, a_end: float, b_start: float, b_end: float) -> tuple[float, float]:
    """(overlap seconds, IoU) of two half-open time ranges."""
    inter = min(a_end, b_end) - max(a_start, b_start)
    union = max(a_end, b_end) - min(a_start, b_start)
    return max(0.0, inter), (max(0.0, inter) / union if union > 0 else 0.0)


def first_hit(query: Query, ranked: Sequence[tuple[str, float, float]]) -> tuple[int | None, float]:
    """(1-based rank, IoU) of the first clip (uri, start_s, end_s) that overlaps a target scene."""
    for rank, (uri, start, end) in enumerate(ranked, start=1):
        for scene in query.targets:
            inter, iou = overlap_iou(start, end, scene.start_s, scene.end_s)
            if uri == scene.uri and inter > _EPS:
                return rank, iou
    return None, 0.0


def _metrics(results: Sequence[tuple[int | None, float]], ks: tuple[int, ...]) -> GroupMetrics:
    ranks = np.array([r if r is not None else math.inf for r, _ in results], dtype=np.float64)
    recall = {k: float((ranks <= k).mean()) for k in ks}
    median = float(np.median(ranks))
    ious = [iou for r, iou in results if r is not None and r <= max(ks)]
    return GroupMetrics(len(results), recall, median if math.isfinite(median) else None,
                        float(np.mean(ious)) if ious else None)


def _exact_results(queries: Sequence[Query], q: np.ndarray, vectors: np.ndarray,
                   where: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[tuple[int | None, float]]:
    """First right clip per query when every clip vector is scored (brute force, cosine).
    `where`: each clip's (uri, start_s, end_s) as arrays."""
    uris, starts, ends = where
    sims = q @ vectors.T
    out: list[tuple[int | None, float]] = []
    for i, query in enumerate(queries):
        rank_of_row = np.empty(len(vectors), dtype=np.int64)
        rank_of_row[np.argsort(-sims[i], kind="stable")] = np.arange(1, len(vectors) + 1)
        best: tuple[int | None, float] = (None, 0.0)
        for scene in query.targets:
            rows = np.flatnonzero((uris == scene.uri) & (np.minimum(ends, scene.end_s)
                                                         - np.maximum(starts, scene.start_s) > _EPS))
            for row in rows:
                if best[0] is None or rank_of_row[row] < best[0]:
                    iou = overlap_iou(starts[row], ends[row], scene.start_s, scene.end_s)[1]
                    best = (int(rank_of_row[row]), iou)
        out.append(best)
    return out


def _index_results(searcher: Searcher, queries: Sequence[Query], q: np.ndarray,
                   depth: int) -> list[tuple[int | None, float]]:
    hits = searcher.search_vectors(q, depth, modality="text")
    return [first_hit(query, [(_uri_key(h.uri), h.start_s, h.end_s) for h in row])
            for query, row in zip(queries, hits, strict=True)]


def evaluate(warehouse: str, truth: str | Path, *, ks: Sequence[int] = DEFAULT_KS, model_id: str | None = None,
             depth: int = 100) -> EvalReport:
    """Text -> clip retrieval metrics of the published index (and of exact search) against `truth`."""
    ks = tuple(sorted(set(int(k) for k in ks)))
    if not ks or ks[0] <= 0:
        raise VidxError(f"--k values must be positive, got {list(ks)}")
    queries = queries_from(load_truth(truth))
    searcher = Searcher(warehouse, model_id=model_id)
    manifest = searcher.manifest
    ids, vectors = load_clips(warehouse, manifest["model_id"], int(manifest["table_version"]))
    uris = np.array([_uri_key(u) for u in ids["uri"].to_pylist()], dtype=object)
    starts, ends = ids["start_s"].to_numpy(), ids["end_s"].to_numpy()
    missing = sorted({s.uri for qr in queries for s in qr.targets} - set(uris.tolist()))
    if missing:
        LOG.warning("%d truth videos have no clips in the table (their queries count as misses): %s",
                    len(missing), ", ".join(missing[:5]))
    LOG.info("evaluating %d text queries against %d clips of %s", len(queries), len(ids), manifest["model_id"])
    q = encode_texts(searcher.model, [qr.caption for qr in queries])
    depth = max(depth, ks[-1])
    results = {"exact": _exact_results(queries, q, vectors, (uris, starts, ends)),
               "index": _index_results(searcher, queries, q, min(depth, len(ids)))}
    report = EvalReport(model_id=manifest["model_id"], index_version=searcher.loaded.version,
                        table_version=int(manifest["table_version"]),
                        index_kind=str(manifest.get("params", {}).get("factory", "?")),
                        n_clips=len(ids), ks=ks, missing_videos=missing)
    combos = ["all", *sorted({qr.combo for qr in queries})]
    for group in combos:
        pick = [i for i, qr in enumerate(queries) if group in ("all", qr.combo)]
        report.groups[group] = {name: _metrics([res[i] for i in pick], ks) for name, res in results.items()}
    return report


def _fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


def print_report(report: EvalReport) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"text -> clip retrieval: {report.model_id}, index {report.index_version} "
                        f"({report.index_kind}, {report.n_clips} clips, table v{report.table_version})")
    for col in ("queries", "search", *(f"R@{k}" for k in report.ks), "median rank", "IoU of hit"):
        table.add_column(col, justify="right" if col not in ("queries", "search") else "left")
    for group, by in report.groups.items():
        for name, m in by.items():
            table.add_row(f"{group} ({m.n})", name, *(f"{m.recall[k]:.3f}" for k in report.ks),
                          _fmt(m.median_rank, "{:g}"), _fmt(m.mean_iou, "{:.2f}"))
    Console().print(table)
    if report.missing_videos:
        Console().print(f"[yellow]{len(report.missing_videos)} truth videos have no clips in the table[/]")
