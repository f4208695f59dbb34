"""clip-retrieval compatibility: its own ClipClient (when installed) and the exact request it sends."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import requests

from indexkit import IMAGE_COLOURS, TEXT_PROBES, image, model_id, publish_tiny
from servekit import running_server, server_config

pytestmark = pytest.mark.integration

# The 14 keys ClipClient always sends (clip-retrieval 2.45 clip_client.py), unused ones null.
CLIENT_KEYS = ("text", "image", "image_url", "embedding_input", "deduplicate", "use_safety_model",
               "use_violence_detector", "indice_name", "use_mclip", "aesthetic_score", "aesthetic_weight",
               "modality", "num_images", "num_result_ids")


def clip_client_module() -> ModuleType | None:
    """clip_retrieval/clip_client.py loaded on its own: importing the package would pull torch, wandb..."""
    try:
        spec = importlib.util.find_spec("clip_retrieval")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "clip_client.py"
    mod_spec = importlib.util.spec_from_file_location("clip_retrieval_clip_client", path)
    if mod_spec is None or mod_spec.loader is None or not path.is_file():
        return None
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def client_body(**given) -> dict:
    """What ClipClient.query posts, with its constructor defaults."""
    body = dict.fromkeys(CLIENT_KEYS)
    body.update(deduplicate=True, use_safety_model=True, use_violence_detector=True, indice_name=model_id(),
                use_mclip=False, aesthetic_score=9, aesthetic_weight=0.5, modality="image", num_images=40,
                num_result_ids=40)
    body.update(given)
    return body


def post_like_client(url: str, body: dict) -> requests.Response:
    """POST exactly as ClipClient does: `data=json.dumps(body)`, no Content-Type header."""
    resp = requests.post(url, data=json.dumps(body), timeout=30)
    assert "Content-Type" not in resp.request.headers
    return resp


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    w = tmp_path_factory.mktemp("serve-compat")
    published, vectors = publish_tiny(w, n=2000)
    with running_server(server_config(w)) as server:
        server.wait_version(published.version)
        yield server, vectors


def test_indices_list(served):
    server, _ = served
    assert server.get("/indices-list").json() == [model_id()]


def test_clip_client_queries(served, tmp_path):
    server, vectors = served
    module = clip_client_module()
    if module is None:
        pytest.skip("clip-retrieval is not installed (make install adds it with --no-deps)")
    client = module.ClipClient(url=server.url + "/knn-service", indice_name=model_id(), num_images=5)
    results = client.query(text=TEXT_PROBES[0])
    assert len(results) == 5
    first = results[0]
    assert first["id"] == 0 and first["url"] == "file:///archive/cats/video000.mp4#t=0,4"
    assert first["caption"] == "video000.mp4 0-4s" and first["similarity"] > 0.99
    png = tmp_path / "q.png"
    image(IMAGE_COLOURS[1]).save(png)
    assert client.query(image=str(png))[0]["id"] == len(TEXT_PROBES) + 1
    by_vector = client.query(embedding_input=vectors[777].tolist())
    assert by_vector[0]["id"] == 777 and by_vector[0]["video_id"] == "vid017"


def test_client_contract_without_the_package(served):
    server, vectors = served
    url = server.url + "/knn-service"
    out = post_like_client(url, client_body(text=TEXT_PROBES[1], num_images=3, num_result_ids=3)).json()
    assert [r["id"] for r in out][:1] == [1] and len(out) == 3
    assert {"id", "similarity", "url", "caption"} <= set(out[0])
    scores = [r["similarity"] for r in out]
    assert scores == sorted(scores, reverse=True)
    by_vec = post_like_client(url, client_body(embedding_input=vectors[5].tolist(), num_images=2)).json()
    assert by_vec[0]["id"] == 5 and len(by_vec) == 2
    # indice_name null means the served index, as in clip-retrieval.
    assert post_like_client(url, client_body(text="x", indice_name=None, num_images=1)).status_code == 200


def test_metadata(served):
    server, _ = served
    body = {"ids": [0, 41], "indice_name": model_id()}
    out = requests.post(server.url + "/metadata", data=json.dumps(body), timeout=30).json()
    assert [r["id"] for r in out] == [0, 41]
    meta = out[1]["metadata"]
    assert meta["video_id"] == "vid001" and meta["clip_idx"] == 2
    assert meta["url"] == "file:///archive/dogs/video001.mp4#t=8,12"
    assert requests.post(server.url + "/metadata", data=json.dumps({"ids": []}), timeout=30).json() == []


@pytest.mark.parametrize(("path", "body", "status", "fragment"), [
    ("/knn-service", {"modality": "text", "text": "x"}, 400, "modality"),
    ("/knn-service", {"image_url": "http://example.invalid/a.jpg"}, 400, "image_url"),
    ("/knn-service", {"text": "x", "indice_name": "laion5B"}, 404, "laion5B"),
    ("/knn-service", {"text": "x", "use_mclip": True}, 400, "mclip"),
    ("/knn-service", {"text": "x", "num_images": 0}, 400, "num_images"),
    ("/knn-service", {}, 400, "exactly one"),
    ("/knn-service", {"text": "x", "embedding_input": [0.1] * 128}, 400, "exactly one"),
    ("/knn-service", {"embedding_input": [0.1] * 3}, 400, "128-d"),
    ("/knn-service", {"image": "%%%"}, 400, "base64"),
    ("/metadata", {"ids": [0, 2000]}, 400, "not rows"),
    ("/metadata", {"ids": ["a"]}, 400, "ids"),
    ("/metadata", {"ids": [0], "indice_name": "other"}, 404, "other"),
])
def test_compat_bad_requests(served, path, body, status, fragment):
    server, _ = served
    full = client_body(**body) if path == "/knn-service" else body
    resp = post_like_client(server.url + path, full)
    assert resp.status_code == status, resp.text
    assert fragment in resp.json()["error"]
