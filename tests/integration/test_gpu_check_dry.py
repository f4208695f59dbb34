"""bench/gpu_check.py --cpu on a machine without pyspark, deltalake and faiss (as the GPU machine of
bench/GPU_CHECK.md lacks them): every piece must still run and write its JSON section."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCKER = '''
import sys
class _Absent:
    """Finder that makes these packages look uninstalled."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"pyspark", "deltalake", "faiss"}:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, _Absent())
'''


def test_gpu_check_dry_run_without_spark_delta_or_faiss(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "lib"), str(ROOT)])}
    env.pop("OUT", None)
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--cpu", "--out", str(out)],
                         env=env, capture_output=True, text=True, timeout=900, check=False)
    report = json.loads(out.read_text())["gpu_check"]
    pieces = ("demo_embed", "fidelity", "token_clustering", "index", "frames_per_s")
    assert {p: report[p].get("error") for p in pieces} == dict.fromkeys(pieces), run.stdout + run.stderr
    assert run.returncode == 0
    embed = report["demo_embed"]
    assert embed["cpu"]["clips"] > 0 and embed["delta"].startswith("deltalake not installed")
    assert report["index"]["backend"] == "torch" and report["index"]["faiss_gpu"].startswith("blocked")
    assert report["index"]["ntotal"] == 20_000
    assert report["frames_per_s"]["results"]["vidx-tiny"] > 0
