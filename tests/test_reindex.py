"""Re-embedding an index with another model (reid.index.reindex, tools/reindex.py): a crop
index and a footage index, built by one tiny model and re-embedded by another, checked against
that model's embeddings of the same files and pictures computed here one at a time, the track
means against numpy, every metadata row against the source's, and the source against its
bytes before."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import pathlib
import shutil
import sqlite3

import keras
import numpy as np
import pytest

from reid.config import IndexConfig, ModelConfig
from reid.data.pipeline import eval_dataset, load_image
from reid.data.preprocessing import normalize_pixels
from reid.index import GalleryError, GalleryIndex, IndexMismatchError, ModelInfo, media
from reid.index.build import build_gallery
from reid.index.gallery import MANIFEST_FILE, METADATA_FILE, SITE_CALIBRATION_KEY
from reid.index.reindex import reindex_gallery
from reid.modeling import build_reid_model, export_embedder
from reid.modeling.embedder import Embedder
from reid.synthetic.crops import generate_dataset
from reid.synthetic.footage import make_synthetic_footage
from reid.video.ingest import index_footage, video_inputs
from tiny_model import standardise_batch_norms
from tool_runner import tool_main

HEIGHT, WIDTH = 64, 32


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("crops")
    generate_dataset(root, ids=6, cameras=2, images_per_id=4, seed=2, height=HEIGHT, width=WIDTH,
                     workers=1)
    return sorted(str(p) for p in root.glob("*/*.jpg"))


@pytest.fixture(scope="module")
def models(tmp_path_factory, crops) -> tuple[pathlib.Path, pathlib.Path]:
    """(the model that builds the indexes, the new model that re-embeds them): the tiny model
    with random weights and the batch-norm statistics of all the crops (at initialisation its
    embeddings are all one point), then of one camera's crops alone, as adapting a model to
    a site's images re-estimates them."""
    root = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    model = build_reid_model(ModelConfig(alpha=0.35, weights=None), (HEIGHT, WIDTH, 3),
                             num_classes=4).embedding_model
    images = np.concatenate([np.asarray(b) for b in eval_dataset(crops, HEIGHT, WIDTH, 64)])
    standardise_batch_norms(model, normalize_pixels(images))
    export_embedder(model, root / "old")
    one_camera = [n for n, path in enumerate(crops) if "_c1" in pathlib.Path(path).name]
    assert 0 < len(one_camera) < len(crops)
    standardise_batch_norms(model, normalize_pixels(images[one_camera]))
    export_embedder(model, root / "new")
    return root / "old", root / "new"


@pytest.fixture(scope="module")
def new_embedder(models) -> Embedder:
    return Embedder.load(models[1], runtime="keras")


def _snapshot(folder: pathlib.Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> SHA-256 of its bytes)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _tables(index_dir: pathlib.Path) -> dict[str, list[tuple]]:
    """Every row of every table of the live version's metadata database, sorted."""
    version = (index_dir / "CURRENT").read_text().strip()
    conn = sqlite3.connect(index_dir / version / METADATA_FILE)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = "
                                            "'table' ORDER BY name")]
        return {n: sorted(conn.execute(f"SELECT * FROM {n}").fetchall(), key=repr)
                for n in names}
    finally:
        conn.close()


def _manifest(index_dir: pathlib.Path) -> dict:
    version = (index_dir / "CURRENT").read_text().strip()
    return json.loads((index_dir / version / MANIFEST_FILE).read_text())


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def crop_index(tmp_path_factory, crops, models):
    """(source index, its files before, re-embedded index, report, log lines): an HNSW index
    of the crops, re-embedded by the library call."""
    root = tmp_path_factory.mktemp("crop-index")
    build_gallery(crops, root / "index", models[0], index_type="hnsw", progress=False,
                  log=lambda _: None)
    before = _snapshot(root / "index")
    lines: list[str] = []
    report = reindex_gallery(root / "index", models[1], root / "new", progress=False,
                             log=lines.append)
    return root / "index", before, root / "new", report, lines


@pytest.fixture(scope="module")
def footage_index(tmp_path_factory, models):
    """(source index, its files before, re-embedded index, the tool's output): two cameras of
    synthetic footage indexed by the old model (ground-truth boxes), one track left without its
    crops and another with one crop fewer, a site calibration stored; re-embedded by the tool."""
    root = tmp_path_factory.mktemp("footage-index")
    make_synthetic_footage(root / "video", cameras=2, people=4, seconds=4, fps=10, width=320,
                           height=240, seed=3)
    inputs = video_inputs([root / "video" / f"{c}.avi" for c in "AB"], [],
                          ["2026-12-02T09:00:00", "2026-12-02T09:00:30"],
                          [root / "video" / c / "gt" / "gt.txt" for c in "AB"])
    index = root / "index"
    index_footage(inputs, index, models[0], progress=False, log=lambda _: None)
    gallery = GalleryIndex.load(index)
    (camera, track), (camera2, track2) = sorted(gallery.footage_tracks())[:2]
    entries = gallery.entries()
    crops = {e.id: e for e in gallery.footage_entries(gallery.ids.tolist()).values()
             if e.kind == "crop"}
    paths = {e.id: e.path for e in entries}
    lone = [paths[i] for i, e in crops.items() if (e.camera, e.track) == (camera, track)]
    fewer = [paths[i] for i, e in crops.items() if (e.camera, e.track) == (camera2, track2)]
    assert len(fewer) >= 2
    gallery.remove(paths=lone + fewer[:1])
    gallery.set_site_calibration({"made_with": "the old model"})
    gallery.save(index)
    before = _snapshot(index)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = tool_main("reindex")(["--index", str(index), "--model", str(models[1]),
                                     "--output", str(root / "new"), "--no-progress"])
    assert code == 0
    return index, before, root / "new", out.getvalue()


def test_a_crop_index_holds_the_new_model_s_embeddings_of_its_files(crop_index, models,
                                                                    new_embedder):
    index, _, new_dir, report, lines = crop_index
    old, new = GalleryIndex.load(index), GalleryIndex.load(new_dir)
    embedder = new_embedder
    assert np.array_equal(new.ids, old.ids)
    # Each file decoded on its own, as tools/build_index.py decodes it.
    want = embedder.embed(np.stack([load_image(e.path, HEIGHT, WIDTH) for e in new.entries()]))
    np.testing.assert_allclose(new.vectors, want, atol=1e-5)
    # Not the old vectors: each crop has its own direction, and the models differ.
    assert np.abs(new.vectors - old.vectors).max() > 0.1
    assert len({tuple(np.round(v, 3)) for v in want}) == len(want)
    assert new.model.fingerprint == embedder.fingerprint != old.model.fingerprint
    assert new.model.model_dir == str(models[1])
    assert new.config == old.config and new.config.type == "hnsw"
    assert _tables(new_dir) == _tables(index)  # paths, labels, digests, times: every row
    assert new.entries()[0].pid is not None and new.entries()[0].digest is not None
    assert report.entries == len(old) == report.image_files and report.tracks == 0
    text = report.format()
    assert text.count("\n") == 0 and f"fingerprint {embedder.fingerprint[:12]}" in text
    assert f"{len(old)} entries" in text and "not carried over" not in text
    assert any(str(models[1]) in line for line in lines)


def test_a_footage_index_is_re_embedded_from_its_stored_pictures(footage_index,
                                                                  new_embedder):
    index, _, new_dir, printed = footage_index
    old, new = GalleryIndex.load(index), GalleryIndex.load(new_dir)
    embedder = new_embedder
    assert np.array_equal(new.ids, old.ids)
    rows = new.footage_entries(new.ids.tolist())
    assert len(rows) == len(new)
    by_track: dict[tuple[str, int], list[int]] = {}
    for i, row in rows.items():
        if row.kind == "crop":
            by_track.setdefault((row.camera, row.track), []).append(i)
    # The crops as the index stored them, read here one by one.
    crop_ids = [i for ids in by_track.values() for i in ids]
    pictures = [media.read_rgb(new_dir, rows[i].thumb) for i in crop_ids]
    np.testing.assert_allclose(new.vectors_of(crop_ids), embedder.embed(pictures), atol=1e-5)
    assert np.abs(new.vectors_of(crop_ids) - old.vectors_of(crop_ids)).max() > 0.1
    lone = 0
    for i, row in rows.items():
        if row.kind != "track":
            continue
        crops = by_track.get((row.camera, row.track))
        if crops is None:  # its crops were removed: its own picture
            lone += 1
            want = embedder.embed([media.read_rgb(new_dir, row.thumb)])[0]
        else:
            want = _unit(new.vectors_of(crops).astype(np.float64).mean(axis=0))
        np.testing.assert_allclose(new.vectors_of([i])[0], want, atol=1e-5)
    assert lone == 1
    # Videos, tracks, cameras, footage rows with times and boxes, digests: every row.
    assert _tables(new_dir) == _tables(index)
    # The pictures are in the new index's own media folder, the same bytes.
    for name in new.media_names():
        assert (media.path(new_dir, name).read_bytes() == media.path(index, name).read_bytes())
    assert _manifest(index)[SITE_CALIBRATION_KEY] == {"made_with": "the old model"}
    assert SITE_CALIBRATION_KEY not in _manifest(new_dir)
    first, *rest = printed.strip().splitlines()[1:]  # after the model's line
    tracks = len(old.footage_tracks())
    assert (f"{len(old)} entries" in first and f"{tracks} track means" in first
            and f"fingerprint {embedder.fingerprint[:12]}" in first)
    assert any("not carried over" in line and "tools/calibrate.py --footage" in line
               for line in rest)


@pytest.mark.parametrize("which", ["crop_index", "footage_index"])
def test_queries_of_the_new_model_go_to_the_new_index_only(which, request, models,
                                                          new_embedder):
    index, _, new_dir, *_ = request.getfixturevalue(which)
    embedder = new_embedder
    info = ModelInfo.from_embedder(embedder, models[1])
    with pytest.raises(IndexMismatchError, match="not by"):
        GalleryIndex.load(index).check_model(info, where=str(index))
    # The new index records the new model (what queries open it with) and accepts it.
    gallery = GalleryIndex.load(new_dir)
    assert gallery.model.model_dir == str(models[1])
    gallery.check_model(info)
    scores, ids = gallery.search_arrays(gallery.vectors[:3], k=1)
    np.testing.assert_array_equal(ids[:, 0], gallery.ids[:3])
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-4)


@pytest.mark.parametrize("which", ["crop_index", "footage_index"])
def test_the_source_index_is_not_changed(which, request):
    index, before, *_ = request.getfixturevalue(which)
    assert _snapshot(index) == before


def test_replacing_embeddings_keeps_ids_and_retrains_ivfpq(tmp_path):
    rng = np.random.default_rng(0)
    old_model = ModelInfo(fingerprint="a" * 64, embedding_dim=16, model_dir="/models/a")
    new_model = ModelInfo(fingerprint="b" * 64, embedding_dim=32, model_dir="/models/b")
    config = IndexConfig(type="ivfpq", pq_m=4, pq_nbits=4, ivf_nlist=4, nprobe=4)
    gallery = GalleryIndex(old_model, config)
    gallery.add([f"/g/{i}.jpg" for i in range(700)], rng.standard_normal((700, 16)))
    gallery.remove(paths=["/g/5.jpg", "/g/7.jpg"])  # ids with gaps
    gallery.set_site_calibration({"x": 1})
    vectors = rng.standard_normal((698, 32))
    gallery.replace_embeddings(new_model, vectors)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(gallery.vectors, unit, atol=1e-6)
    assert gallery.model == new_model and gallery.config == config
    assert gallery.site_calibration is None and 5 not in gallery.ids.tolist()
    # The FAISS index holds the new vectors under the old ids: the files agree when saved,
    # and (approximate, re-scored exactly) searches find most entries first.
    gallery.save(tmp_path / "index")
    GalleryIndex.load(tmp_path / "index")
    _, ids = gallery.search_arrays(unit[:50], k=10)
    assert np.mean(ids[:, 0] == gallery.ids[:50]) >= 0.9
    with pytest.raises(GalleryError, match="698 entries but 3 vectors"):
        gallery.replace_embeddings(new_model, vectors[:3])


def _run(args: list[str], capsys) -> tuple[int, str]:
    code = tool_main("reindex")(args)
    return code, capsys.readouterr().err


def test_an_existing_output_is_refused(crop_index, models, tmp_path, capsys):
    index, _, new_dir, *_ = crop_index
    before = _snapshot(new_dir)
    for output, what in ((new_dir, "already holds a gallery index"), (index, "already holds"),
                         (index / "v", "inside the index"),
                         (pathlib.Path(models[0]), "not a gallery index and is not empty")):
        code, err = _run(["--index", str(index), "--model", str(models[1]), "--output",
                          str(output)], capsys)
        assert code == 1 and err.startswith(f"error: {output}: ") and what in err, err
        assert err.count("\n") == 1
    assert _snapshot(new_dir) == before and not (index / "v").exists()


def test_a_missing_or_changed_image_is_named_and_nothing_is_written(crops, models, tmp_path,
                                                                    capsys):
    images = tmp_path / "images"
    images.mkdir()
    files = [pathlib.Path(shutil.copy(path, images)) for path in crops[:3]]
    # Refused before any model loads: stand-in vectors do.
    gallery = GalleryIndex(ModelInfo(fingerprint="a" * 64, embedding_dim=8))
    gallery.add(files, np.eye(3, 8), digests=[hashlib.sha256(f.read_bytes()).hexdigest()
                                              for f in files])
    gallery.save(tmp_path / "index")
    args = ["--index", str(tmp_path / "index"), "--model", str(models[1]), "--output",
            str(tmp_path / "new")]
    files[1].unlink()
    code, err = _run(args, capsys)
    assert code == 1 and err.startswith(f"error: {files[1]}: ") and "is not there" in err
    shutil.copy(files[0], files[1])  # back, with another image's content
    code, err = _run(args, capsys)
    assert code == 1 and err.startswith(f"error: {files[1]}: ") and "other content" in err
    assert not (tmp_path / "new").exists()
