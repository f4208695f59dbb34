"""`vidx eval --moments`: do moments match a scene's real extent better than single clips?

Every caption of a truth file (see `vidx.quality.retrieval_eval`) is one text query, answered twice
through the published index: as clips and as moments (`vidx.serve.moments`). A result is right at
IoU t when it lies in a video of a target scene and its [start, end) overlaps that scene with
temporal IoU >= t, the usual moment-retrieval measure ("R@1, IoU >= 0.5"). A 4 s clip can reach
IoU 0.5 only with scenes of at most 8 s; a moment can cover a longer scene.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidx.config import SearchConfig
from vidx.encode.embedder import encode_texts
from vidx.quality.retrieval_eval import Query, _uri_key, load_truth, overlap_iou, queries_from
from vidx.serve.moments import searcher_moments
from vidx.serve.query import Searcher

LOG = logging.getLogger(__name__)
Span = tuple[str, float, float]  # (uri key, start_s, end_s)


@dataclass(frozen=True)
class SpanMetrics:
    n: int
    recall_at_1: float         # share of queries whose first result has IoU >= threshold with a target
    recall_at_k: float         # ... any of the first k results
    mean_iou_at_1: float       # IoU of the first result with its best target (0 when in another video)
    mean_length_s: float       # mean length of the first result


@dataclass(frozen=True)
class MomentReport:
    index_version: str
    model_id: str
    n_scenes: int
    mean_scene_s: float
    k: int
    iou: float
    moment_drop: float
    moment_fanout: int
    clips: SpanMetrics
    moments: SpanMetrics

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def best_iou(query: Query, span: Span) -> float:
    uri, start, end = span
    return max((overlap_iou(start, end, s.start_s, s.end_s)[1] for s in query.targets if s.uri == uri), default=0.0)


def span_metrics(queries: Sequence[Query], ranked: Sequence[Sequence[Span]], *, k: int, iou: float) -> SpanMetrics:
    """Moment-retrieval recall of ranked spans (one list per query)."""
    first = [best_iou(q, r[0]) if r else 0.0 for q, r in zip(queries, ranked, strict=True)]
    any_k = [any(best_iou(q, s) >= iou for s in r[:k]) for q, r in zip(queries, ranked, strict=True)]
    lengths = [r[0][2] - r[0][1] for r in ranked if r]
    return SpanMetrics(len(queries), float(np.mean([v >= iou for v in first])), float(np.mean(any_k)),
                       float(np.mean(first)), float(np.mean(lengths)) if lengths else 0.0)


def evaluate_moments(warehouse: str, truth: str | Path, *, cfg: SearchConfig, model_id: str | None = None,
                     k: int = 5, iou: float = 0.5) -> MomentReport:
    """Clips vs moments for every caption of `truth`, against the published index."""
    queries = queries_from(load_truth(truth))
    searcher = Searcher(warehouse, model_id=model_id)
    vectors = encode_texts(searcher.model, [q.caption for q in queries])
    clip_spans: list[list[Span]] = []
    moment_spans: list[list[Span]] = []
    for vec in vectors:
        hits = searcher.search_vectors(vec.reshape(1, -1), k, modality="text")[0]
        clip_spans.append([(_uri_key(h.uri), h.start_s, h.end_s) for h in hits])
        moments = searcher_moments(searcher, vec, k, modality="text", cfg=cfg)
        moment_spans.append([(_uri_key(m.uri), m.start_s, m.end_s) for m in moments])
    scenes = [s for q in queries for s in q.targets]
    report = MomentReport(searcher.loaded.version, str(searcher.manifest["model_id"]), len(scenes),
                          float(np.mean([s.end_s - s.start_s for s in scenes])), k, iou, cfg.moment_drop,
                          cfg.moment_fanout, span_metrics(queries, clip_spans, k=k, iou=iou),
                          span_metrics(queries, moment_spans, k=k, iou=iou))
    LOG.info("moments vs clips: %s", report)
    return report


def print_moment_report(report: MomentReport) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"text -> span retrieval, IoU >= {report.iou:g}: {report.model_id}, index "
                        f"{report.index_version} ({report.n_scenes} scenes, mean {report.mean_scene_s:.1f} s; "
                        f"moment_drop {report.moment_drop:g})")
    for col in ("results", "R@1", f"R@{report.k}", "mean IoU of first", "mean length (s)"):
        table.add_column(col, justify="left" if col == "results" else "right")
    for name, m in (("clips", report.clips), ("moments", report.moments)):
        table.add_row(name, f"{m.recall_at_1:.3f}", f"{m.recall_at_k:.3f}", f"{m.mean_iou_at_1:.3f}",
                      f"{m.mean_length_s:.1f}")
    Console().print(table)
