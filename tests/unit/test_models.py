import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from vidx.encode.embedder import encode_frames, encode_texts
from vidx.encode.models import ModelSpec, embedding_dim, load_model, model_id_for
from vidx.encode.registry import encoder_id
from vidx.errors import ModelLoadError

_EMBED_SNIPPET = """
import numpy as np
from vidx.encode.models import ModelSpec, load_model
from vidx.encode.embedder import encode_frames
lm = load_model(ModelSpec("vidx-tiny"), device="cpu")
frames = np.random.default_rng(1).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
print(encode_frames(lm, frames, batch_size=2).tobytes().hex())
"""


def test_vidx_tiny_is_registered_and_small():
    lm = load_model(ModelSpec("vidx-tiny"), device="cpu")
    assert lm.dim == embedding_dim("vidx-tiny") == 128
    assert lm.image_size == 64
    assert lm.model_id == encoder_id("vidx-tiny", "random", 128)
    assert sum(p.numel() for p in lm.model.parameters()) < 20_000_000


def test_vidx_tiny_outputs_identical_across_processes():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outs = [subprocess.run([sys.executable, "-c", _EMBED_SNIPPET], capture_output=True, text=True,
                           env=env, check=True).stdout.strip() for _ in range(2)]
    assert outs[0] == outs[1] and len(outs[0]) > 0


def test_encoders_normalised_and_batch_invariant():
    lm = load_model(ModelSpec("vidx-tiny"), device="cpu")
    frames = np.random.default_rng(0).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    a = encode_frames(lm, frames, batch_size=5)
    b = encode_frames(lm, frames, batch_size=2)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    t = encode_texts(lm, ["a red circle", "two blue squares"])
    assert t.shape == (2, 128)


def test_unknown_model_is_clear():
    with pytest.raises(ModelLoadError, match="unknown open_clip model"):
        load_model(ModelSpec("no-such-model"))


def test_missing_checkpoint_path_is_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(ModelSpec("vidx-tiny", str(tmp_path / "missing.pt")))


def test_checkpoint_path_loads_and_names_model_by_content(tmp_path):
    lm = load_model(ModelSpec("vidx-tiny"), device="cpu")
    ckpt = tmp_path / "tiny.pt"
    torch.save(lm.model.state_dict(), ckpt)
    spec = ModelSpec("vidx-tiny", str(ckpt))
    loaded = load_model(spec, device="cpu")
    assert loaded.model_id.startswith("vidx-tiny__ckpt") and loaded.model_id == model_id_for(spec)
    for (_, p), (_, q) in zip(lm.model.state_dict().items(), loaded.model.state_dict().items(), strict=True):
        assert torch.equal(p, q)


def test_unreachable_weights_name_the_model_and_the_fix():
    code = ("from vidx.encode.models import ModelSpec, load_model\n"
            "load_model(ModelSpec('ViT-B-32', 'laion2b_s34b_b79k'))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert proc.returncode != 0
    assert "ModelLoadError" in proc.stderr
    assert "ViT-B-32" in proc.stderr and "--pretrained /path/to/checkpoint" in proc.stderr
