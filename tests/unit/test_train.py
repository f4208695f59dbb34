"""vidx train-tiny: training batches, determinism of a few steps, checkpoints, the packaged weights."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from vidx.config import load_config
from vidx.encode.embedder import encode_frames, encode_texts
from vidx.encode.models import PACKAGED_WEIGHTS, WEIGHTS_DIR, ModelSpec, load_model
from vidx.encode.registry import encoder_id
from vidx.errors import ConfigError, ModelLoadError
from vidx.synth.world import AttributeSplit
from vidx.train.data import BatchSpec, sample_batch_attributes, to_model_input, training_batch
from vidx.train.loop import TrainConfig, lr_at, train_tiny
from vidx.train.probe import probe_model

TINY = {"steps": 3, "batch_size": 8, "warmup_steps": 1, "threads": 1, "log_every": 1}


def test_batches_have_distinct_seen_captions_and_are_deterministic() -> None:
    split, spec = AttributeSplit(), BatchSpec(batch_size=64)
    attrs = sample_batch_attributes(np.random.default_rng(0), split, spec)
    assert len(set(attrs)) == 64 and all(split.combo(c, s) == "seen" for s, c, _, _ in attrs)
    # about half are one-attribute variants of their predecessor (the hard negatives)
    one_off = sum(sum(x != y for x, y in zip(a, b, strict=True)) == 1 for a, b in itertools.pairwise(attrs))
    assert one_off >= 16
    frames, captions = training_batch(np.random.default_rng(1), split, spec)
    again, captions2 = training_batch(np.random.default_rng(1), split, spec)
    assert frames.shape == (64, 64, 64, 3) and frames.dtype == np.uint8 and len(set(captions)) == 64
    assert np.array_equal(frames, again) and captions == captions2
    assert "purple star" not in " ".join(captions)


def test_model_input_is_the_centre_square_of_the_short_side() -> None:
    frame = np.zeros((90, 160, 3), np.uint8)
    frame[:, :30] = 255  # a white band on the left, outside the centre square after resizing
    out = to_model_input(frame, 64)
    assert out.shape == (64, 64, 3) and out.max() == 0


def test_lr_schedule_warms_up_then_decays() -> None:
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1e-3)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:])) and lrs[-1] < 1e-5


def test_same_seed_gives_identical_weights(tmp_path) -> None:
    a = train_tiny(TrainConfig(seed=3, **TINY), tmp_path / "a.pt")  # type: ignore[arg-type]
    b = train_tiny(TrainConfig(seed=3, **TINY), tmp_path / "b.pt")  # type: ignore[arg-type]
    c = train_tiny(TrainConfig(seed=4, **TINY), tmp_path / "c.pt")  # type: ignore[arg-type]
    assert a.sha256 == b.sha256 != c.sha256 and a.losses == b.losses
    sa, sc = torch.load(a.path), torch.load(c.path)
    assert all(v.dtype in (torch.float16, torch.int64, torch.bool) for v in sa.values())
    assert not torch.equal(sa["visual.conv1.weight"], sc["visual.conv1.weight"])
    # the checkpoint is an ordinary open_clip state dict: --pretrained PATH loads it
    lm = load_model(ModelSpec("vidx-tiny", str(a.path)), device="cpu")
    assert lm.model_id.startswith("vidx-tiny__ckpt")
    assert torch.equal(lm.model.state_dict()["visual.conv1.weight"].half(), sa["visual.conv1.weight"])


def test_bad_training_settings_are_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError):
        train_tiny(TrainConfig(steps=0), tmp_path / "x.pt")
    with pytest.raises(ModelLoadError, match="unknown open_clip model"):
        train_tiny(TrainConfig(model="no-such-model", **TINY), tmp_path / "x.pt")  # type: ignore[arg-type]


def test_packaged_synthetic_weights_load_offline_and_understand_captions() -> None:
    path = WEIGHTS_DIR / PACKAGED_WEIGHTS[("vidx-tiny", "synthetic-v1")]
    assert path.is_file() and path.stat().st_size <= 20 * 2**20
    assert load_config(env={}).encode.pretrained == "synthetic-v1"
    lm = load_model(ModelSpec("vidx-tiny", "synthetic-v1"), device="cpu")
    assert lm.model_id == encoder_id("vidx-tiny", "synthetic-v1", 128)
    result = probe_model(lm.model, lm.tokenizer, split=AttributeSplit(), n_scenes=60)
    assert result.recall["seen"][5] >= 0.9 and result.recall["unseen"][5] >= 0.8, result.summary()
    # and through vidx's own encoders: a red frame is nearer "red" captions than "green" ones
    frames, captions = training_batch(np.random.default_rng(0), AttributeSplit(), BatchSpec(batch_size=16))
    sims = encode_texts(lm, captions) @ encode_frames(lm, frames, batch_size=16).T
    assert (sims.argmax(axis=1) == np.arange(16)).mean() >= 0.5


def test_packaged_tag_is_only_for_its_model() -> None:
    with pytest.raises(ModelLoadError, match="only"):
        load_model(ModelSpec("ViT-B-32", "synthetic-v1"))


def test_packaged_checkpoint_is_the_one_the_model_card_describes() -> None:
    """The card's sha256 is that of `vidx train-tiny --seed 0` (defaults); a retrained or edited
    checkpoint must come with an updated card."""
    import hashlib
    import re

    card = (WEIGHTS_DIR / "MODEL_CARD.md").read_text()
    weights = WEIGHTS_DIR / "vidx-tiny-synthetic-v1.pt"
    match = re.search(r"sha256 \| `([0-9a-f]{64})`", card)
    assert match, "MODEL_CARD.md must state the checkpoint's sha256"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == match.group(1)
    assert f"{weights.stat().st_size:,} bytes" in card
    defaults = TrainConfig()
    assert (defaults.seed, defaults.steps, defaults.batch_size) == (0, 400, 128)  # what the card says
