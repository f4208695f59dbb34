"""CenterCLIP token clustering (Zhao et al., SIGIR 2022) for any open_clip VisionTransformer.

A clip's frames run through the stem and the first `layer` blocks one frame at a time, as usual.
Then the frames are cut into contiguous temporal segments; each segment's patch tokens (all its
frames together) are reduced to `centers` k-medoids++ medoids and its CLS tokens to their mean,
and the remaining blocks run on [CLS, medoids]: one embedding per segment for the cost of a
fraction of the tokens. Medoids are real tokens, so they keep their positional embeddings.

Clustering is deterministic and independent of batch composition: the random numbers of the
D^2 seeding come from one `torch.Generator(seed)` draw shared by every segment (inverse-CDF
sampling), so a clip gets the same medoids alone or inside any batch.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer

from vidx.errors import ConfigError, ModelLoadError, VidxError

LOG = logging.getLogger(__name__)

# Segments clustered at once are capped so the (B, N, N) distance tensors stay ~256 MB (float32).
_MAX_DIST_ELEMENTS = 1 << 26


@dataclass(frozen=True)
class TokenClustering:
    """Settings of the token clustering (mirrors vidx.config.TokenClusteringConfig).

    Defaults suit ViT-B-32 on 4-frame clips (4 s at 1 fps): cluster after block 6 of 12, two 2-frame
    segments, 98 patch tokens -> 16 medoids each. Shallower models need a smaller `layer`
    (vidx-tiny has 4 blocks: use 2).
    """

    enabled: bool = False
    layer: int = 6
    segments: int = 2
    centers: int = 16
    algorithm: Literal["kmedoids"] = "kmedoids"
    iters: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        problems = [f"{name} must be >= {low}, got {getattr(self, name)}"
                    for name, low in (("layer", 0), ("segments", 1), ("centers", 1), ("iters", 0))
                    if getattr(self, name) < low]
        if self.algorithm != "kmedoids":
            problems.append(f"algorithm must be 'kmedoids', got {self.algorithm!r}")
        if problems:
            raise ConfigError("invalid encode.token_clustering: " + "; ".join(problems))

    @classmethod
    def from_config(cls, cfg: Any) -> TokenClustering:
        """From a vidx.config.TokenClusteringConfig (or any object with the same fields)."""
        return cls(enabled=cfg.enabled, layer=cfg.layer, segments=cfg.segments, centers=cfg.centers,
                   algorithm=cfg.algorithm, iters=cfg.iters, seed=cfg.seed)


@dataclass(frozen=True)
class ClipEncoding:
    segment_embeddings: torch.Tensor  # (S_eff, dim) float32, L2-normalised, in time order
    clip_embedding: torch.Tensor      # (dim,) float32, L2-normalised mean of the segment embeddings


@dataclass(frozen=True)
class KMedoidsResult:
    medoids: torch.Tensor           # (B, K) int64 token indices, ascending (time, then space order)
    labels: torch.Tensor            # (B, N) int64 position in `medoids` of each point's nearest medoid
    objective: list[torch.Tensor]   # (B,) sum of point-to-medoid distances after each assignment
    iterations: int                 # update steps run (< iters when every segment became stable)


# ---------------------------------------------------------------- k-medoids++ (batched)

def pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """(B, N, D) -> (B, N, N) Euclidean distances with an exact zero diagonal.

    Centring first keeps the Gram-matrix form accurate for ViT tokens, whose norms can be large
    next to their differences; symmetrising and the zero diagonal make ties behave.
    """
    x = x.float()
    x = x - x.mean(dim=1, keepdim=True)
    sq = (x * x).sum(-1)
    d2 = sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * (x @ x.transpose(1, 2))
    d2 = (0.5 * (d2 + d2.transpose(1, 2))).clamp_min_(0.0)
    d2.diagonal(dim1=1, dim2=2).zero_()
    return d2.sqrt_()


def _seed_medoids(dist: torch.Tensor, k: int, u: torch.Tensor) -> torch.Tensor:
    """k-means++-style D^2 seeding over precomputed distances; `u` (k,) uniform numbers in [0, 1)."""
    b, n, _ = dist.shape
    rows = torch.arange(b, device=dist.device)
    chosen = torch.zeros(b, n, dtype=torch.bool, device=dist.device)
    first = (u[0] * n).long().clamp_(max=n - 1).expand(b)
    medoids = [first]
    chosen[rows, first] = True
    nearest = dist[rows, first]  # (B, N) distance to the closest medoid so far
    for j in range(1, k):
        weight = nearest * nearest
        # All remaining points coincide with medoids (duplicate tokens, e.g. a static shot):
        # any unchosen point is as good as another, so draw uniformly among them.
        empty = weight.sum(1, keepdim=True) <= 0
        weight = torch.where(empty, (~chosen).to(weight.dtype), weight)
        cdf = weight.cumsum(1)
        target = u[j] * cdf[:, -1:]
        # right=True never lands on a zero-weight (already chosen) point.
        pick = torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_(max=n - 1)
        medoids.append(pick)
        chosen[rows, pick] = True
        nearest = torch.minimum(nearest, dist[rows, pick])
    return torch.stack(medoids, 1)


def _assign(dist: torch.Tensor, medoids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels (B, N) of each point's nearest medoid and the objective (B,)."""
    to_medoid = dist.gather(2, medoids.unsqueeze(1).expand(-1, dist.shape[1], -1))  # (B, N, K)
    best, labels = to_medoid.min(2)
    # A medoid always belongs to its own cluster (duplicate tokens would tie): no empty clusters.
    labels.scatter_(1, medoids, torch.arange(medoids.shape[1], device=dist.device).expand_as(medoids))
    return labels, best.sum(1)


def _update(dist: torch.Tensor, labels: torch.Tensor, medoids: torch.Tensor) -> torch.Tensor:
    """Each cluster's member with the least summed distance to the others; ties keep the old medoid."""
    member = F.one_hot(labels, medoids.shape[1]).to(dist.dtype)  # (B, N, K)
    cost = (dist @ member).masked_fill_(member == 0, float("inf"))  # cost[b, i, k] if i in cluster k
    new_cost, new = cost.min(1)
    old_cost = cost.gather(1, medoids.unsqueeze(1)).squeeze(1)
    return torch.where(new_cost < old_cost, new, medoids)


def kmedoids_pp(x: torch.Tensor, k: int, *, iters: int = 10, seed: int = 0) -> KMedoidsResult:
    """Batched k-medoids++ of (B, N, D) points into k <= N clusters each; medoids are points."""
    if x.ndim != 3 or not 1 <= k <= x.shape[1]:
        raise VidxError(f"k-medoids needs (B, N, D) points with 1 <= k <= N, got shape "
                        f"{tuple(x.shape)} and k={k}")
    dist = pairwise_distances(x)
    u = torch.rand(k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    medoids = _seed_medoids(dist, k, u.to(device=dist.device, dtype=dist.dtype))
    objective: list[torch.Tensor] = []
    steps = 0
    while steps < iters:
        labels, obj = _assign(dist, medoids)
        objective.append(obj)
        new = _update(dist, labels, medoids)
        if torch.equal(new, medoids):
            break  # every segment is stable: more iterations would change nothing
        medoids = new
        steps += 1
    medoids = medoids.sort(1).values  # time-then-space order, like the paper's id_sort
    labels, obj = _assign(dist, medoids)
    objective.append(obj)
    return KMedoidsResult(medoids, labels, objective, steps)


# ---------------------------------------------------------------- ViT plumbing

def vision_tower(model: Any) -> VisionTransformer:
    """The open_clip VisionTransformer of a CLIP model, a LoadedModel, or the tower itself."""
    inner = getattr(model, "model", model)  # vidx LoadedModel -> open_clip model
    visual = inner if isinstance(inner, VisionTransformer) else getattr(inner, "visual", None)
    if not isinstance(visual, VisionTransformer):
        raise ModelLoadError(f"token clustering needs an open_clip VisionTransformer image tower, got "
                             f"{type(visual).__name__}; use a ViT model or set "
                             "encode.token_clustering.enabled=false")
    return visual


def _run_blocks(vit: VisionTransformer, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Blocks [start, stop) on (N, L, D) tokens, honouring the transformer's batch_first layout."""
    batch_first = getattr(vit.transformer, "batch_first", True)
    if not batch_first:
        x = x.transpose(0, 1)
    for block in vit.transformer.resblocks[start:stop]:
        x = block(x, attn_mask=None)  # the image tower attends everywhere (open_clip passes None)
    return x if batch_first else x.transpose(0, 1)


def _head(vit: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """open_clip's pooling, ln_post and projection: (N, L, D) tokens -> (N, dim) features."""
    pooled, _ = vit._pool(x)
    if vit.proj is not None:
        pooled = pooled @ vit.proj
    return pooled


def _check_frames(vit: VisionTransformer, frames: torch.Tensor, clip_lengths: list[int]) -> None:
    size = tuple(vit.image_size)
    if frames.ndim != 4 or frames.shape[1] != 3 or tuple(frames.shape[2:]) != size:
        raise VidxError(f"expected normalised frames of shape (N, 3, {size[0]}, {size[1]}), got "
                        f"{tuple(frames.shape)}; resize and normalise them as the model's preprocessing does")
    if not clip_lengths or min(clip_lengths) < 1 or sum(clip_lengths) != frames.shape[0]:
        raise VidxError(f"clip_lengths must be positive and sum to the {frames.shape[0]} frames given, "
                        f"got {clip_lengths}")


def segment_bounds(n_frames: int, segments: int) -> list[tuple[int, int]]:
    """min(segments, n_frames) contiguous [start, stop) frame ranges, sizes differing by at most one."""
    count = min(segments, n_frames)
    base, extra = divmod(n_frames, count)
    bounds, start = [], 0
    for i in range(count):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.double(), dim=-1).float()


def _assemble(seg_emb: torch.Tensor, per_clip: list[int], clip_emb: torch.Tensor | None) -> list[ClipEncoding]:
    """Split (total segments, dim) rows into ClipEncodings; clip = renormalised mean of its segments.

    Whole-batch tensor ops rather than per-clip ones: on a loaded CPU every small op pays a thread sync.
    """
    segs = _normalise(seg_emb).cpu()
    if clip_emb is None:
        owner = torch.repeat_interleave(torch.arange(len(per_clip)), torch.tensor(per_clip))
        sums = torch.zeros(len(per_clip), segs.shape[1], dtype=torch.float64).index_add_(0, owner, segs.double())
        clip_emb = _normalise(sums)
    clips = clip_emb.cpu()
    return [ClipEncoding(part, clips[i]) for i, part in enumerate(torch.split(segs, per_clip))]


# ---------------------------------------------------------------- encoding

def _baseline(model: Any, vit: VisionTransformer, frames: torch.Tensor, lengths: list[int],
              segments: int) -> list[ClipEncoding]:
    """Clustering off: per-frame encode_image, clip = normalised mean of normalised frames (pool_clips)."""
    encode = getattr(getattr(model, "model", model), "encode_image", vit)
    features = encode(frames)
    if isinstance(features, tuple):  # a bare tower built with output_tokens=True: (pooled, tokens)
        features = features[0]
    frame_emb = F.normalize(features.double(), dim=-1)
    seg_rows, clip_rows, per_clip, offset = [], [], [], 0
    for n in lengths:
        clip = frame_emb[offset:offset + n]
        bounds = segment_bounds(n, segments)
        seg_rows += [clip[a:b].mean(0) for a, b in bounds]
        clip_rows.append(clip.mean(0))
        per_clip.append(len(bounds))
        offset += n
    return _assemble(torch.stack(seg_rows), per_clip, _normalise(torch.stack(clip_rows)))


def _cluster_segments(patches: torch.Tensor, clustering: TokenClustering) -> torch.Tensor:
    """(G, N, D) patch tokens of equal-length segments -> (G, min(K, N), D) medoid tokens."""
    g, n, _ = patches.shape
    if clustering.centers >= n:
        return patches  # nothing to reduce: keep every token, in order
    chunk = max(1, _MAX_DIST_ELEMENTS // (n * n))
    kept = []
    for lo in range(0, g, chunk):
        part = patches[lo:lo + chunk]
        result = kmedoids_pp(part, clustering.centers, iters=clustering.iters, seed=clustering.seed)
        kept.append(part.gather(1, result.medoids.unsqueeze(2).expand(-1, -1, part.shape[2])))
    return torch.cat(kept)


def _clustered(vit: VisionTransformer, frames: torch.Tensor, lengths: list[int],
               clustering: TokenClustering) -> list[ClipEncoding]:
    depth = len(vit.transformer.resblocks)
    if clustering.layer > depth:
        raise ConfigError(f"encode.token_clustering.layer={clustering.layer} but the model has only {depth} "
                          f"blocks; choose a layer in 0..{depth}")
    # Stem and first blocks per frame, all clips in one batch: the encoder sees full batches.
    x = _run_blocks(vit, vit._embeds(frames), 0, clustering.layer)
    per_clip, spans, offset = [], [], 0
    for n in lengths:
        bounds = segment_bounds(n, clustering.segments)
        spans += [(offset + a, offset + b) for a, b in bounds]
        per_clip.append(len(bounds))
        offset += n
    # Segments with the same frame count have the same token count: cluster them as one batch.
    by_frames: dict[int, list[int]] = defaultdict(list)
    for i, (a, b) in enumerate(spans):
        by_frames[b - a].append(i)
    by_tokens: dict[int, list[tuple[list[int], torch.Tensor]]] = defaultdict(list)
    for n_frames, idx in by_frames.items():
        starts = torch.tensor([spans[i][0] for i in idx], device=x.device)
        seg = x[starts.unsqueeze(1) + torch.arange(n_frames, device=x.device)]  # (G, n_frames, 1 + P, D)
        cls = seg[:, :, 0].mean(1, keepdim=True)  # the segment's CLS: mean of its frames' CLS tokens
        patches = seg[:, :, 1:].reshape(len(idx), -1, x.shape[2])  # all its frames' patches together
        tokens = torch.cat([cls, _cluster_segments(patches, clustering)], dim=1)
        by_tokens[tokens.shape[1]].append((idx, tokens))
    # The later blocks run batched across every segment whose token count is the same.
    done = []
    for groups in by_tokens.values():
        late = _run_blocks(vit, torch.cat([t for _, t in groups]), clustering.layer, depth)
        done.append(([i for ids, _ in groups for i in ids], _head(vit, late)))
    seg_emb = torch.empty(len(spans), done[0][1].shape[1], dtype=torch.float64, device=x.device)
    for idx, out in done:
        seg_emb[torch.tensor(idx, device=x.device)] = out.double()
    return _assemble(seg_emb, per_clip, None)


def encode_clips(model: Any, frames: torch.Tensor, clip_lengths: list[int], *,
                 clustering: TokenClustering) -> list[ClipEncoding]:
    """Encode many clips at once; `frames` (sum(clip_lengths), 3, S, S) normalised, clip after clip.

    `model` is an open_clip CLIP model, a vidx LoadedModel, or a VisionTransformer. With clustering
    off this is exactly the per-frame baseline; with it on, see the module docstring.
    """
    vit = vision_tower(model)
    lengths = [int(n) for n in clip_lengths]
    _check_frames(vit, frames, lengths)
    param = vit.conv1.weight
    frames = frames.to(device=param.device, dtype=param.dtype)  # bf16/fp16 weights need matching input
    with torch.inference_mode():
        if not clustering.enabled:
            return _baseline(model, vit, frames, lengths, clustering.segments)
        return _clustered(vit, frames, lengths, clustering)


def encode_clip_frames(model: Any, frames: torch.Tensor, *, clustering: TokenClustering) -> ClipEncoding:
    """One clip: `frames` (T, 3, S, S) normalised, in time order."""
    if frames.ndim != 4 or frames.shape[0] < 1:
        raise VidxError(f"expected (T, 3, S, S) frames of one clip with T >= 1, got {tuple(frames.shape)}")
    return encode_clips(model, frames, [int(frames.shape[0])], clustering=clustering)[0]
