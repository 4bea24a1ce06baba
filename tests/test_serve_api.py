"""The search service's API in-process (FastAPI's TestClient), over a real (tiny, untrained)
model: answers against brute force over the index's own vectors, every error status, the token
rule, pictures by id only, and a new version published by a writer while it serves."""

from __future__ import annotations

import pathlib
import struct
import zlib

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from reid.data.synthetic import generate_dataset
from reid.index import GalleryIndex
from reid.index.build import build_gallery
from reid.index.query import embed_queries, open_gallery
from reid.serve.app import ServeLimits, create_app
from reid.video.ingest import index_footage, video_inputs
from reid.video.synthetic import make_synthetic_footage
from tiny_model import export_tiny_model
from tool_runner import tool_main


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> pathlib.Path:
    return export_tiny_model(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, ids=6, cameras=3, images_per_id=4, seed=4, height=64, width=32,
                     workers=1)
    return root


@pytest.fixture(scope="module")
def index(tmp_path_factory, model, data) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("index") / "gallery"
    build_gallery([data / "bounding_box_test"], folder, model, progress=False,
                  log=lambda _: None)
    return folder


@pytest.fixture(scope="module")
def client(index) -> TestClient:
    return TestClient(create_app(index, limits=ServeLimits(max_upload_bytes=200_000,
                                                             max_pixels=1_000_000)))


def _post(client: TestClient, content: bytes | None = None, name: str = "q.jpg",
          headers: dict | None = None, **fields: object):
    files = None if content is None else {"image": (name, content, "image/jpeg")}
    return client.post("/api/search", files=files, data={k: str(v) for k, v in fields.items()},
                       headers=headers or {})


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (no pixel data to speak of)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)))


def test_search_by_upload_ranks_as_brute_force(client, index, data):
    query = sorted((data / "query").glob("*.jpg"))[0]
    answer = _post(client, query.read_bytes(), query.name, k=5, threshold="none")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["kind"] == "crops" and body["threshold"] is None
    # Brute force: the query embedded as tools/query.py embeds it, cosine against every vector.
    gallery, embedder, _ = open_gallery(index)
    vector = embed_queries(embedder, [query])[0]
    scores = gallery.vectors @ vector
    order = np.argsort(-scores, kind="stable")[:5]
    assert [h["id"] for h in body["hits"]] == gallery.ids[order].tolist()
    assert [h["score"] for h in body["hits"]] == pytest.approx(scores[order].tolist(), abs=1e-5)


def test_search_by_item_and_its_thumbnail(client, index):
    gallery = GalleryIndex.load(index)
    entry = gallery.entries()[3]
    body = _post(client, item_id=entry.id, k=3).json()
    assert body["hits"][0]["id"] == entry.id and body["hits"][0]["score"] == pytest.approx(1.0)
    picture = client.get(f"/api/items/{entry.id}/thumbnail")
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
    decoded = cv2.imdecode(np.frombuffer(picture.content, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape[:2] == cv2.imread(entry.path).shape[:2]


@pytest.mark.parametrize("make, fields, status, message", [
    (lambda: b"\xff\xd8\xff\xe0 not really a jpeg", {}, 400, "cannot be decoded"),
    (lambda: b"\xff\xd8\xff" + b"\0" * 200_001, {}, 413, "larger than the limit"),
    (lambda: _png_header(2000, 2000), {}, 413, "2000x2000 pixels"),
    (lambda: b"just some text", {}, 415, "not a JPEG, PNG"),
    (None, {}, 422, "either an image or an item_id"),
    (None, {"item_id": 10_000}, 404, "item 10000: not in the index"),
    (None, {"item_id": 0, "k": 0}, 422, None),
    (None, {"item_id": 0, "threshold": "high"}, 422, "expected auto, none or a cosine"),
])
def test_errors_are_json_with_their_status(client, make, fields, status, message):
    answer = _post(client, None if make is None else make(), **fields)
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    if message is not None:
        assert message in detail


def test_pictures_are_addressed_by_id_only(client):
    assert client.get("/api/items/..%2F..%2Fetc%2Fpasswd/thumbnail").status_code in (404, 422)
    assert client.get("/api/items/99999/thumbnail").status_code == 404
    assert client.get("/api/items/0/frame").status_code == 404  # not from footage


def test_the_token_rule(index, capsys):
    guarded = TestClient(create_app(index, token="s3cret"))
    assert guarded.get("/api/health").status_code == 401
    assert guarded.get("/api/health", headers={"Authorization": "Bearer wrong"}
                       ).status_code == 401
    assert guarded.get("/api/health", headers={"Authorization": "Bearer s3cret"}).json() == {
        "status": "ok"}
    assert guarded.get("/").status_code == 200  # the page holds no data
    # Binding beyond the loopback without a token is refused before anything loads.
    assert tool_main("serve")(["--index", str(index), "--host", "0.0.0.0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --host 0.0.0.0") and "token" in err and err.count("\n") == 1


def test_a_new_version_is_served_on_the_next_request(tmp_path, model, data):
    folder = tmp_path / "gallery"
    files = sorted((data / "bounding_box_test").glob("*.jpg")) + sorted(
        (data / "query").glob("*.jpg"))
    assert len(files) >= 9
    build_gallery(files[:5], folder, model, progress=False, log=lambda _: None)
    served = TestClient(create_app(folder))
    before = served.get("/api/stats").json()
    assert before["count"] == 5
    build_gallery(files[5:9], folder, append=True, progress=False, log=lambda _: None)
    after = served.get("/api/stats").json()
    assert after["count"] == 9 and after["version"] != before["version"]
    assert _post(served, item_id=8, k=1).json()["hits"][0]["id"] == 8


def test_a_footage_index_answers_with_appearances_and_frames(tmp_path, model):
    footage = tmp_path / "video"
    make_synthetic_footage(footage, cameras=2, people=4, seconds=4, fps=10, width=320,
                           height=240, seed=6)
    index = tmp_path / "footage"
    inputs = video_inputs([footage / "A.avi", footage / "B.avi"], [], [],
                          [footage / "A" / "det" / "det.txt", footage / "B" / "det" / "det.txt"])
    index_footage(inputs, index, model, progress=False, log=lambda _: None)
    served = TestClient(create_app(index))
    stats = served.get("/api/stats").json()
    assert stats["kind"] == "footage" and stats["cameras"] == ["A", "B"]
    gallery = GalleryIndex.load(index)
    (camera, track), _ = next(iter(gallery.footage_tracks().items()))
    mean = next(e for e in gallery.track_entries(camera, track) if e.kind == "track")
    body = _post(served, item_id=mean.id, k=3).json()
    assert body["kind"] == "footage"
    first = body["appearances"][0]
    assert (first["camera"], first["track"], first["id"]) == (camera, track, mean.id)
    assert "thumb" not in first and first["has_frame"] is True
    frame = served.get(f"/api/items/{mean.id}/frame")
    decoded = cv2.imdecode(np.frombuffer(frame.content, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape[:2] == (240, 320)


def test_an_index_rebuilt_by_another_model_is_refused_not_served(tmp_path, model, data):
    folder = tmp_path / "gallery"
    files = sorted((data / "bounding_box_test").glob("*.jpg"))
    build_gallery(files[:3], folder, model, progress=False, log=lambda _: None)
    served = TestClient(create_app(folder, token="t"))
    other = export_tiny_model(tmp_path / "other" / "model", seed=1)
    build_gallery(files[:3], folder, other, overwrite=True, progress=False, log=lambda _: None)
    answer = served.get("/api/stats", headers={"Authorization": "Bearer t"})
    assert answer.status_code == 503 and "cannot be served" in answer.json()["detail"]
    # A token that is not ASCII is a wrong token, not a server error.
    assert served.get("/api/health", headers={"Authorization": "Bearer tö".encode("latin-1")}
                      ).status_code == 401
