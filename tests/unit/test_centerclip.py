"""CenterCLIP token clustering: k-medoids++, segment encoding, and the baseline it must reduce to."""

import copy
import dataclasses

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer

from vidx.config import VidxConfig, load_config
from vidx.encode.centerclip import (
    TokenClustering,
    encode_clip_frames,
    encode_clips,
    kmedoids_pp,
    pairwise_distances,
    segment_bounds,
)
from vidx.encode.centerclip_bench import bench_token_clustering, overlap_at_k
from vidx.encode.embedder import pool_clips
from vidx.encode.models import ModelSpec, load_model
from vidx.errors import ConfigError, ModelLoadError, VidxError

# vidx-tiny has 4 blocks, so the ViT-B-32 default layer (6) is lowered to 2.
ON = TokenClustering(enabled=True, layer=2, segments=2, centers=16, iters=10, seed=0)


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelSpec("vidx-tiny", "random"), device="cpu").model


def _frames(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    # Smooth images (upsampled noise) rather than white noise: neighbouring patches are alike, as in video.
    small = torch.rand((n, 3, 8, 8), generator=torch.Generator().manual_seed(seed))
    return F.interpolate(small, size=size, mode="bilinear", align_corners=False).sub_(0.5).div_(0.25)


def _blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0, 0.0], [50.0, 0.0, 0.0], [0.0, 50.0, 0.0], [0.0, 0.0, 50.0]])
    truth = torch.arange(4).repeat_interleave(25)
    points = centres[truth] + torch.randn(100, 3, generator=gen)
    perm = torch.randperm(100, generator=gen)
    return points[perm], truth[perm]


# ---------------------------------------------------------------- k-medoids++

def test_kmedoids_medoids_are_members_and_points_go_to_nearest():
    x = torch.randn(3, 60, 8, generator=torch.Generator().manual_seed(1))
    res = kmedoids_pp(x, 7, iters=10, seed=3)
    dist = pairwise_distances(x)
    assert res.medoids.shape == (3, 7) and res.labels.shape == (3, 60)
    for b in range(3):
        med = res.medoids[b]
        assert len(set(med.tolist())) == 7 and bool((med >= 0).all() and (med < 60).all())
        assert torch.equal(med, med.sort().values)
        assert torch.equal(res.labels[b, med], torch.arange(7))  # a medoid is in its own cluster
        to_med = dist[b][:, med]
        chosen = to_med.gather(1, res.labels[b].unsqueeze(1)).squeeze(1)
        torch.testing.assert_close(chosen, to_med.min(1).values)


def test_kmedoids_objective_never_increases():
    x = torch.randn(4, 80, 16, generator=torch.Generator().manual_seed(2))
    res = kmedoids_pp(x, 6, iters=20, seed=0)
    objective = torch.stack(res.objective)  # (steps + 1, B)
    assert len(res.objective) >= 2
    assert bool((objective[1:] <= objective[:-1] + 1e-4).all())


def test_kmedoids_recovers_well_separated_blobs():
    points, truth = _blobs()
    res = kmedoids_pp(points.unsqueeze(0), 4, iters=10, seed=0)
    labels = res.labels[0]
    assert sorted(truth[res.medoids[0]].tolist()) == [0, 1, 2, 3]  # one medoid per blob
    for k in range(4):
        assert len(set(truth[labels == k].tolist())) == 1  # every cluster is pure


def test_kmedoids_is_deterministic_and_seeded():
    x = torch.randn(8, 50, 4, generator=torch.Generator().manual_seed(5))
    a, b = kmedoids_pp(x, 5, seed=11), kmedoids_pp(x, 5, seed=11)
    assert torch.equal(a.medoids, b.medoids) and torch.equal(a.labels, b.labels)
    others = [kmedoids_pp(x, 5, iters=0, seed=s).medoids for s in range(1, 6)]
    assert any(not torch.equal(o, a.medoids) for o in others)


def test_kmedoids_handles_duplicate_points_and_k_equal_n():
    same = torch.ones(2, 10, 3)
    res = kmedoids_pp(same, 4, iters=5)
    assert all(len(set(row.tolist())) == 4 for row in res.medoids)
    full = kmedoids_pp(torch.randn(1, 6, 2), 6)
    assert full.medoids.tolist() == [[0, 1, 2, 3, 4, 5]]
    with pytest.raises(VidxError):
        kmedoids_pp(torch.randn(1, 3, 2), 4)


# ---------------------------------------------------------------- encoding

def test_segment_bounds_contiguous_and_balanced():
    assert segment_bounds(4, 2) == [(0, 2), (2, 4)]
    assert segment_bounds(5, 2) == [(0, 3), (3, 5)]
    assert segment_bounds(2, 4) == [(0, 1), (1, 2)]
    assert segment_bounds(7, 3) == [(0, 3), (3, 5), (5, 7)]


def test_shapes_and_normalisation(tiny):
    enc = encode_clip_frames(tiny, _frames(5), clustering=ON)
    assert enc.segment_embeddings.shape == (2, 128) and enc.clip_embedding.shape == (128,)
    assert enc.segment_embeddings.dtype == torch.float32
    torch.testing.assert_close(enc.segment_embeddings.norm(dim=1), torch.ones(2))
    expected = F.normalize(enc.segment_embeddings.mean(0), dim=0)
    torch.testing.assert_close(enc.clip_embedding, expected, atol=1e-6, rtol=0)
    one = encode_clip_frames(tiny, _frames(1), clustering=ON)
    assert one.segment_embeddings.shape == (1, 128)  # S_eff = min(S, T)


def test_same_seed_same_output_and_changes_embedding(tiny):
    frames = _frames(4, seed=3)
    a = encode_clip_frames(tiny, frames, clustering=ON)
    b = encode_clip_frames(tiny, frames, clustering=ON)
    assert torch.equal(a.segment_embeddings, b.segment_embeddings)
    base = encode_clip_frames(tiny, frames, clustering=dataclasses.replace(ON, enabled=False))
    cos = float(a.clip_embedding @ base.clip_embedding)
    assert 0.5 < cos < 1.0 - 1e-6  # clustering changes the embedding, but not beyond recognition


def test_all_tokens_kept_reproduces_per_frame_embeddings(tiny):
    frames = _frames(3, seed=4)
    patches = (64 // 8) ** 2
    keep = dataclasses.replace(ON, segments=3, centers=patches)  # one frame per segment, K = P
    enc = encode_clip_frames(tiny, frames, clustering=keep)
    with torch.inference_mode():
        ref = F.normalize(tiny.encode_image(frames), dim=-1)
    torch.testing.assert_close(enc.segment_embeddings, ref, atol=1e-5, rtol=0)
    base = encode_clip_frames(tiny, frames, clustering=dataclasses.replace(keep, enabled=False))
    torch.testing.assert_close(enc.clip_embedding, base.clip_embedding, atol=1e-5, rtol=0)


def test_disabled_is_the_pool_clips_baseline(tiny):
    frames, lengths = _frames(7, seed=5), [4, 3]
    out = encode_clips(tiny, frames, lengths, clustering=dataclasses.replace(ON, enabled=False))
    with torch.inference_mode():
        emb = F.normalize(tiny.encode_image(frames), dim=-1).numpy()
    pooled = pool_clips(emb, np.repeat([0, 1], lengths), 2)
    np.testing.assert_allclose(np.stack([o.clip_embedding.numpy() for o in out]), pooled, atol=1e-6)
    seg0 = F.normalize(torch.from_numpy(emb[:2]).mean(0), dim=0)
    torch.testing.assert_close(out[0].segment_embeddings[0], seg0, atol=1e-6, rtol=0)


def test_batched_clips_match_one_at_a_time(tiny):
    frames, lengths = _frames(9, seed=6), [4, 3, 1, 1]
    many = encode_clips(tiny, frames, lengths, clustering=ON)
    offsets = np.cumsum([0, *lengths])
    for enc, lo, hi in zip(many, offsets[:-1], offsets[1:], strict=True):
        alone = encode_clip_frames(tiny, frames[lo:hi], clustering=ON)
        torch.testing.assert_close(enc.segment_embeddings, alone.segment_embeddings, atol=1e-5, rtol=0)


def test_sequence_first_transformer_gives_same_result(tiny):
    lnd = copy.deepcopy(tiny)
    lnd.visual.transformer.batch_first = False
    for block in lnd.visual.transformer.resblocks:
        block.attn.batch_first = False
    frames = _frames(4, seed=7)
    for cfg in (ON, dataclasses.replace(ON, enabled=False)):
        a = encode_clip_frames(tiny, frames, clustering=cfg)
        b = encode_clip_frames(lnd, frames, clustering=cfg)
        torch.testing.assert_close(a.segment_embeddings, b.segment_embeddings, atol=1e-5, rtol=0)


def test_typed_errors(tiny):
    with pytest.raises(ConfigError, match="layer"):
        encode_clip_frames(tiny, _frames(2), clustering=dataclasses.replace(ON, layer=5))
    with pytest.raises(ConfigError, match="centers"):
        TokenClustering(centers=0)
    with pytest.raises(ModelLoadError, match="VisionTransformer"):
        encode_clip_frames(torch.nn.Linear(2, 2), _frames(2), clustering=ON)
    with pytest.raises(VidxError, match="shape"):
        encode_clip_frames(tiny, _frames(2, size=32), clustering=ON)
    with pytest.raises(VidxError, match="clip_lengths"):
        encode_clips(tiny, _frames(3), [2, 2], clustering=ON)


def test_config_section_matches_dataclass():
    cfg = VidxConfig().encode.token_clustering
    assert TokenClustering.from_config(cfg) == TokenClustering()
    env = {"VIDX_ENCODE__TOKEN_CLUSTERING__ENABLED": "true", "VIDX_ENCODE__TOKEN_CLUSTERING__CENTERS": "8"}
    loaded = load_config(env=env).encode.token_clustering
    assert loaded.enabled and loaded.centers == 8
    with pytest.raises(ConfigError):
        load_config(env={}, overrides={"encode.token_clustering.algorithm": "kmeans"})


@pytest.mark.parametrize("name", ["ViT-B-32", "ViT-B-16", "ViT-L-14"])
def test_runs_on_open_clip_vits(name):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = open_clip.create_model(name, pretrained=None).eval()
    frames = _frames(2, size=224, seed=8)
    # Defaults (layer 6, 2 segments, 16 centres): each 1-frame segment's 49 patches are clustered.
    enc = encode_clip_frames(model, frames, clustering=TokenClustering(enabled=True))
    dim = open_clip.get_model_config(name)["embed_dim"]  # 512 for B/32 and B/16, 768 for L/14
    assert enc.segment_embeddings.shape == (2, dim) and enc.clip_embedding.shape == (dim,)
    assert bool(torch.isfinite(enc.segment_embeddings).all())


@pytest.mark.parametrize("variant", [
    {},
    {"pool_type": "avg", "final_ln_after_pool": True, "no_ln_pre": True},  # CLIPA-style
    {"attentional_pool": True, "attn_pooler_queries": 4, "output_tokens": True},  # CoCa-style
    {"qk_norm": True, "ls_init_value": 0.1},  # custom attention blocks, layer scale
])
def test_tower_variants_keep_all_tokens_exact(variant):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vit = VisionTransformer(image_size=32, patch_size=8, width=64, layers=3, heads=2, mlp_ratio=2.0,
                                output_dim=32, **variant).eval()
    frames = _frames(2, size=32, seed=9)
    keep = TokenClustering(enabled=True, layer=1, segments=2, centers=16)  # 16 patches per frame
    enc = encode_clip_frames(vit, frames, clustering=keep)
    with torch.inference_mode():
        out = vit(frames)
    ref = F.normalize(out[0] if isinstance(out, tuple) else out, dim=-1)
    torch.testing.assert_close(enc.segment_embeddings, ref, atol=1e-5, rtol=0)
    clustered = encode_clip_frames(vit, frames, clustering=dataclasses.replace(keep, segments=1, centers=8))
    assert clustered.segment_embeddings.shape == (1, 32)


def test_overlap_at_k():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((30, 8)).astype(np.float32)
    assert overlap_at_k(a, a, 10) == 1.0
    assert overlap_at_k(a, rng.standard_normal((30, 8)).astype(np.float32), 10) < 0.7


def test_bench_token_clustering_reports_figures(tiny):
    result = bench_token_clustering(tiny, frames_per_clip=4, n_clips=12, clustering=TokenClustering(enabled=True),
                                    batch_frames=16, repeats=1)
    assert result["clustering"]["layer"] == 2  # the ViT-B-32 default (6) is too deep for vidx-tiny's 4 blocks
    for key in ("speedup", "fidelity_cosine", "clustered_ips", "baseline_ips", "overlap_at_10"):
        assert np.isfinite(result[key]) and result[key] > 0
    assert -1.0 <= result["fidelity_cosine"] <= 1.0 + 1e-6 and 0.0 <= result["overlap_at_10"] <= 1.0
