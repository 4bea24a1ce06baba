"""Building and querying a gallery with a real (tiny, untrained) embedder, through the library and
through tools/build_index.py, tools/query.py and tools/export_projector.py.

The model is MobileNetV2 alpha 0.35 at 64x32 with random weights: its rankings are poor but
deterministic, which is all these tests need.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import select
import shutil
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest

from reid.config import ModelConfig
from reid.data.market1501 import read_market1501
from reid.synthetic.crops import generate_dataset
from reid.evaluation import evaluate_rank, pairwise_distance
from reid.index import GalleryError, GalleryIndex, IndexMismatchError, is_gallery_index
from reid.index.build import build_gallery, collect_images, relocate_gallery
from reid.index.open import open_gallery
from reid.index.query import embed_queries, query_gallery
from reid.modeling import build_reid_model, export_embedder
from reid.modeling.reid_model import NECK_LAYER
from index_format_1 import write_format_1
from tool_runner import tool_main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _export(folder: pathlib.Path, seed: int, collapsed: bool = False) -> pathlib.Path:
    keras.utils.set_random_seed(seed)
    models = build_reid_model(ModelConfig(alpha=0.35, weights=None), (64, 32, 3), num_classes=4)
    if collapsed:  # the neck adds 1e4 to every feature (at most 6): one direction for all
        neck = models.embedding_model.get_layer(NECK_LAYER)
        neck.moving_mean.assign(np.full(neck.moving_mean.shape, -1e4, np.float32))
    export_embedder(models.embedding_model, folder)
    return folder


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> pathlib.Path:
    """A training run folder holding only its exported model."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    _export(run / "model", seed=0)
    return run


@pytest.fixture(scope="session")
def other_model(tmp_path_factory) -> pathlib.Path:
    return _export(tmp_path_factory.mktemp("other") / "model", seed=1)


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, ids=8, cameras=3, images_per_id=6, seed=2, height=64, width=32,
                     workers=1)
    return root


@pytest.fixture(scope="session")
def built(tmp_path_factory, run_dir, data) -> pathlib.Path:
    """A flat index of the synthetic gallery split (do not modify)."""
    index = tmp_path_factory.mktemp("built") / "gallery"
    build_gallery([data / "bounding_box_test"], index, run_dir, progress=False,
                  log=lambda _: None)
    return index


def gallery_files(data: pathlib.Path) -> list[pathlib.Path]:
    return sorted((data / "bounding_box_test").glob("*.jpg"))


# --- library -------------------------------------------------------------------------------

def test_gallery_image_query_returns_itself_first(built, data):
    gallery, embedder, model_dir = open_gallery(built)
    assert model_dir.name == "model"
    files = gallery_files(data)
    assert len(gallery) == len(files)
    results = query_gallery(gallery, embedder, [str(files[0]), str(files[-1])], k=5)
    for path, result in zip([files[0], files[-1]], results):
        assert result.hits[0].path == str(path)
        assert result.hits[0].score == pytest.approx(1.0, abs=1e-4)
        pid, cam = int(path.name[:4]), int(path.name[6])  # "0007_c1s1_..."
        assert (result.pid, result.camid) == (pid, cam) == (result.hits[0].pid,
                                                             result.hits[0].camid)


def test_synthetic_split_ranking_agrees_with_evaluate_rank(built, data):
    gallery, embedder, _ = open_gallery(built)
    dataset = read_market1501(data)
    by_path = {e.path: e for e in gallery.entries()}
    records = dataset.gallery
    assert sorted(by_path) == sorted(r.path for r in records)
    # labels stored in the index are those the dataset reader gives
    assert all((by_path[r.path].pid, by_path[r.path].camid) == (r.pid, r.camid) for r in records)

    queries = embed_queries(embedder, [r.path for r in dataset.query])
    q_pids = np.array([r.pid for r in dataset.query])
    q_cams = np.array([r.camid for r in dataset.query])
    entries = gallery.entries(gallery.ids)
    g_pids = np.array([e.pid for e in entries])
    g_cams = np.array([e.camid for e in entries])
    reference = evaluate_rank(pairwise_distance(queries, gallery.vectors, "cosine"), q_pids,
                              g_pids, q_cams, g_cams)

    scores, ids = gallery.search_arrays(queries, k=len(gallery))
    rows = np.searchsorted(gallery.ids, ids)
    distmat = np.empty((len(queries), len(gallery)), np.float32)
    np.put_along_axis(distmat, rows, 1.0 - scores, axis=1)
    ours = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams)
    assert ours["mAP"] == pytest.approx(reference["mAP"], abs=1e-6)
    np.testing.assert_allclose(ours["cmc"], reference["cmc"])
    # and the scores are the cosine similarities of the same features
    sims = queries @ np.asarray(gallery.vectors).T
    np.testing.assert_allclose(scores, np.take_along_axis(sims, rows, axis=1), atol=1e-5)


def _copy_some(data: pathlib.Path, folder: pathlib.Path, n: int) -> list[pathlib.Path]:
    folder.mkdir()
    files = gallery_files(data)[:n]
    for f in files:
        shutil.copy(f, folder / f.name)
    return [folder / f.name for f in files]


def test_unreadable_files_are_listed_and_skipped(tmp_path, run_dir, data):
    good = _copy_some(data, tmp_path / "imgs", 4)
    truncated = tmp_path / "imgs" / "0001_c1s1_999999_00.jpg"
    truncated.write_bytes(good[0].read_bytes()[:200])
    fake = tmp_path / "imgs" / "0002_c2s1_999999_00.jpg"
    fake.write_text("not a picture")
    notes = tmp_path / "imgs" / "notes.txt"
    notes.write_text("camera list")
    (tmp_path / "imgs" / ".DS_Store").write_bytes(b"\0")  # hidden: not considered at all
    report = build_gallery([tmp_path / "imgs"], tmp_path / "g", run_dir, progress=False,
                           log=lambda _: None)
    assert report.added == 4 and report.files == 7 and report.saved
    assert sorted(p for p, _ in report.unreadable) == sorted(str(p) for p in (truncated, fake,
                                                                              notes))
    assert all("cannot read or decode image" in why for _, why in report.unreadable)
    text = report.format()
    assert "added 4, skipped 0 as duplicates, skipped 3 as unreadable" in text
    assert f"unreadable: {notes}:" in text
    assert sorted(e.path for e in GalleryIndex.load(tmp_path / "g").entries()) == \
        sorted(str(p) for p in good)


def test_nothing_readable_writes_no_index(tmp_path, run_dir, capsys):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    code = tool_main("build_index")(["--model", str(run_dir), "--images", str(tmp_path / "bad"),
                                     "--index", str(tmp_path / "g"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1] == f"error: {tmp_path / 'g'}: no readable new images; index " \
                                    f"not written"
    assert not is_gallery_index(tmp_path / "g")


def test_build_tool_pattern_that_matches_nothing_is_one_line(tmp_path, run_dir, capsys):
    code = tool_main("build_index")(["--model", str(run_dir), "--images",
                                     str(tmp_path / "nothing*"), "--index", str(tmp_path / "g")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err == [f"error: {tmp_path / 'nothing*'}: no files match this pattern"]
    assert not (tmp_path / "g").exists()


def test_bad_image_arguments(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(GalleryError, match="empty: folder has no files"):
        collect_images([tmp_path / "empty"])
    with pytest.raises(GalleryError, match=r"\*\.jpg: no files match this pattern"):
        collect_images([str(tmp_path / "empty" / "*.jpg")])
    with pytest.raises(GalleryError, match="missing: no such file or folder"):
        collect_images([tmp_path / "missing"])
    with pytest.raises(GalleryError, match="no images given"):
        collect_images([])
    (tmp_path / "empty" / "sub").mkdir()
    with pytest.raises(GalleryError, match=r"empty: folder has no files \(only folders: pass "):
        collect_images([tmp_path / "empty"])


def test_dangling_links_and_subfolders_are_reported_not_skipped(tmp_path, run_dir, data):
    folder = tmp_path / "images"
    files = _copy_some(data, folder, 3)
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (folder / "more").mkdir()
    shutil.copy(files[0], folder / "more" / "x.jpg")
    report = build_gallery([folder], tmp_path / "g", run_dir, progress=False,
                           log=lambda _: None)
    assert report.added == 3 and [p for p, _ in report.unreadable] == [str(folder / "gone.jpg")]
    assert report.subfolders == [str(folder / "more")]
    text = report.format()
    assert f"unreadable: {folder / 'gone.jpg'}: " in text
    assert f"not searched: {folder / 'more'}/ (a folder; pass '{folder / 'more'}/**'" in text


def test_append_skips_duplicates_and_unchanged_index_is_not_rewritten(tmp_path, run_dir, data):
    files = gallery_files(data)
    first, second = files[:5], files[3:9]
    index = tmp_path / "g"
    build_gallery([str(f) for f in first], index, run_dir, progress=False, log=lambda _: None)
    with pytest.raises(GalleryError, match="already holds a gallery index; append to it or "
                                           "overwrite it"):
        build_gallery([str(f) for f in second], index, run_dir, progress=False,
                      log=lambda _: None)
    # the model defaults to the one in the manifest
    report = build_gallery([str(f) for f in second] + [str(second[0])], index, append=True,
                           progress=False, log=lambda _: None)
    assert report.added == 4 and len(report.duplicates) == 3 and report.count == 9
    version = (index / "CURRENT").read_text()
    again = build_gallery([str(f) for f in files[:9]], index, append=True, progress=False,
                          log=lambda _: None)
    assert again.added == 0 and len(again.duplicates) == 9 and not again.saved
    assert (index / "CURRENT").read_text() == version
    paths = sorted(e.path for e in GalleryIndex.load(index).entries())
    assert paths == sorted(str(f) for f in files[:9])
    with pytest.raises(GalleryError, match="of type flat; it cannot be appended to as hnsw"):
        build_gallery([str(files[10])], index, append=True, index_type="hnsw", progress=False,
                      log=lambda _: None)


def test_overwrite_replaces_even_a_damaged_index(tmp_path, run_dir, data):
    files = gallery_files(data)
    index = tmp_path / "g"
    build_gallery([str(f) for f in files[:3]], index, run_dir, progress=False, log=lambda _: None)
    for f in index.glob("v*/index.faiss"):
        f.write_bytes(b"damaged")
    with pytest.raises(GalleryError, match="index.faiss"):
        GalleryIndex.load(index)
    report = build_gallery([str(f) for f in files[3:5]], index, run_dir, overwrite=True,
                           progress=False, log=lambda _: None)
    assert report.created and report.saved and report.count == 2
    assert sorted(e.path for e in GalleryIndex.load(index).entries()) == [str(f) for f in
                                                                          files[3:5]]


def test_refuses_a_folder_that_is_not_an_index_before_any_work(tmp_path, data):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(GalleryError, match="photos: folder is not a gallery index"):
        build_gallery([data / "query"], tmp_path / "photos", tmp_path / "no-model",
                      progress=False, log=lambda _: None)


def test_model_and_index_mismatch(tmp_path, built, run_dir, other_model, data):
    files = [str(f) for f in gallery_files(data)[:2]]
    with pytest.raises(IndexMismatchError, match=rf"built by model {run_dir / 'model'} "
                                                 rf"\(fingerprint [0-9a-f]{{12}}"):
        build_gallery(files, built, other_model, append=True, progress=False,
                      log=lambda _: None)
    with pytest.raises(IndexMismatchError, match=rf"built by model {run_dir / 'model'}.*not "
                                                 rf"by {other_model}"):
        open_gallery(built, other_model)
    # a copy of the right model is accepted in place of the recorded one
    copy = shutil.copytree(run_dir / "model", tmp_path / "copy")
    assert open_gallery(built, copy)[2] == copy


def test_moved_model_is_reported(tmp_path, data):
    model = _export(tmp_path / "run" / "model_best", seed=0)
    index = tmp_path / "g"
    report = build_gallery([str(gallery_files(data)[0])], index, tmp_path / "run",
                           progress=False, log=lambda _: None)
    assert "model_best" in report.model_note and "model not found" in report.model_note
    shutil.move(model, tmp_path / "elsewhere")
    with pytest.raises(GalleryError, match=r"the model that built the index, .*model_best.* is "
                                           r"not found; give a copy of it as the model"):
        open_gallery(index)


def test_ivfpq_gallery_too_small_fails_before_embedding(tmp_path, run_dir, data):
    with pytest.raises(GalleryError, match="IVF-PQ needs at least 256 vectors"):
        build_gallery([data / "bounding_box_test"], tmp_path / "g", run_dir, index_type="ivfpq",
                      progress=False, log=lambda _: None)
    assert not (tmp_path / "g").exists()


# --- the tools, in process -------------------------------------------------------------------

def test_query_tool_table_json_and_grid(built, data, tmp_path, capsys):
    files = gallery_files(data)
    query = data / "query" / sorted(p.name for p in (data / "query").glob("*.jpg"))[0]
    main = tool_main("query")
    grid = tmp_path / "grid.png"
    assert main(["--index", str(built), "--image", str(files[2]), str(query), "--top-k", "4",
                 "--save-grid", str(grid)]) == 0
    out, err = capsys.readouterr()
    assert "collapsed" not in err  # random weights spread crops far more than a collapse
    assert out.count("rank   score    pid  cam  path") == 2
    first_row = out.splitlines()[2].split()
    assert first_row[0] == "1" and float(first_row[1]) == pytest.approx(1.0, abs=1e-3)
    assert first_row[-1] == str(files[2])
    picture = cv2.imread(str(grid))
    assert picture is not None and picture.shape[0] > 2 * 128 and picture.shape[1] > 5 * 64

    assert main(["--index", str(built), "--image", str(query), "--top-k", "3", "--json",
                 "--exclude-same-camera"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    # The model has no calibration and no --threshold was given: ranks only.
    assert result["query"] == str(query) and result["threshold"] is None
    assert result["in_gallery"] is None and len(result["hits"]) == 3
    assert [set(hit) for hit in result["hits"]] == [
        {"id", "rank", "score", "match", "path", "pid", "camid"}] * 3
    q_cam = int(query.name.split("_c")[1][0])
    assert result["camid"] == q_cam and all(hit["camid"] != q_cam for hit in result["hits"])
    assert [hit["rank"] for hit in result["hits"]] == [1, 2, 3]
    assert all(hit["match"] is None for hit in result["hits"])


def test_build_tool_projector_option(tmp_path, run_dir, data, capsys):
    main = tool_main("build_index")
    assert main(["--model", str(run_dir), "--images", str(data / "query" / "*.jpg"),
                 "--index", str(tmp_path / "g"), "--type", "hnsw", "--no-progress",
                 "--projector", str(tmp_path / "proj")]) == 0
    out = capsys.readouterr().out
    assert "hnsw" in out and "added" in out and "tensorboard --logdir" in out
    assert {p.name for p in (tmp_path / "proj").iterdir()} == {
        "projector_config.pbtxt", "vectors.tsv", "metadata.tsv", "sprite.png"}
    assert GalleryIndex.load(tmp_path / "g").config.type == "hnsw"
    assert tool_main("export_projector")(["--index", str(tmp_path / "g"), "--out",
                                     str(tmp_path / "p2"), "--max-points", "5"]) == 0
    assert len((tmp_path / "p2" / "metadata.tsv").read_text().splitlines()) == 6
    mine = tmp_path / "p3"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert tool_main("export_projector")(["--index", str(tmp_path / "g"), "--out", str(mine)]) == 1
    assert capsys.readouterr().err == (
        f"error: {mine}: folder holds files an export did not write (notes.txt); choose a new "
        f"or empty folder, or let the projector files be written beside them (--overwrite)\n")


def test_collapsed_embeddings_are_flagged_by_build_and_query(tmp_path, data, capsys):
    model = _export(tmp_path / "collapsed", seed=0, collapsed=True)
    index = tmp_path / "g"
    assert tool_main("build_index")(["--model", str(model), "--images", str(data / "query"),
                                     "--index", str(index), "--no-progress"]) == 0
    warning = f"warning: the embeddings of the index {index} have collapsed"
    assert warning in capsys.readouterr().out
    query = sorted((data / "query").glob("*.jpg"))[0]
    # Issue 29: with --threshold 1 it printed "the best score, 1.0000, is below the match
    # threshold 1.0000" (the scores are 1 - 7e-7). What is printed must read as decided.
    assert tool_main("query")(["--index", str(index), "--image", str(query),
                               "--threshold", "1"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    rows = re.findall(r"^ +\d+ +(\S+) +(yes|no) ", out, re.M)
    scores = [float(s) for s, _ in rows]
    assert scores and all(abs(s - 1.0) < 1e-4 for s in scores)  # what the warning explains
    assert f"warning: the embeddings of the gallery {index} have collapsed" in captured.err
    threshold = re.search(r"^match threshold (\S+) \(given\)$", out, re.M).group(1)
    assert all((float(p) >= float(threshold)) == (v == "yes") for p, v in rows), out
    if not any(v == "yes" for _, v in rows):
        best = re.search(r"^not in the gallery: the best score, (\S+), is below the match "
                         rf"threshold {re.escape(threshold)}$", out, re.M)
        assert best and float(best.group(1)) < float(threshold), out


def test_build_tool_refuses_before_embedding(tmp_path, run_dir, data, capsys):
    """Arguments that cannot be honoured are refused before any work, and nothing is written."""
    main = tool_main("build_index")
    notes = tmp_path / "dataset"
    notes.mkdir()
    (notes / "NOTES.txt").write_text("mine")
    base = ["--model", str(run_dir), "--images", str(data / "query"), "--index",
            str(tmp_path / "g"), "--no-progress"]
    assert main(base + ["--projector", str(notes)]) == 1
    assert capsys.readouterr().err.startswith(
        f"error: {notes}: folder holds files an export did not write (NOTES.txt)")
    assert main(base + ["--set", "train.epochs=3"]) == 1
    assert capsys.readouterr().err == ("error: override 'train.epochs=3': build_index reads "
                                       "only the 'index' section of a config\n")
    assert not (tmp_path / "g").exists() and [p.name for p in notes.iterdir()] == ["NOTES.txt"]


@pytest.mark.parametrize("args, message", [
    (["--index", "{tmp}/none", "--image", "{q}"], "{tmp}/none: gallery index folder not found"),
    (["--index", "{built}", "--image", "{tmp}/missing.jpg"], "{tmp}/missing.jpg: query image "
                                                             "not found"),
    (["--index", "{built}", "--image", "{odd}", "--exclude-same-camera"],
     "{odd}: the query's camera is to be left out, but the file name does not give it (file "
     "names PPPP_cC... (person id, '_c', camera number), e.g. 0002_c1s1_000451_03.jpg or "
     "0001_c2_f0046182.jpg) (--exclude-same-camera)"),
    (["--index", "{built}", "--image", "{q}", "--top-k", "0"], "--top-k: expected a positive"),
    # issue 29: an OverflowError from SQLite
    (["--index", "{built}", "--track", "A:99999999999999999999"],
     "--track A:99999999999999999999: track number out of range"),
    (["--index", "{built}", "--image", "{tmp}"], "{tmp}: is a folder, not a query image"),
    # refused before any query is answered, not after the results print
    (["--index", "{built}", "--image", "{q}", "--save-grid", "{tmp}/g.png", "--grid-height", "0"],
     "--grid-height: must be at least 16 pixels, got 0"),
    (["--index", "{built}", "--image", "{q}", "--save-grid", "{tmp}/no/g.png"],
     "{tmp}/no/g.png: folder {tmp}/no does not exist"),
    (["--index", "{built}", "--image", "{q}", "--save-grid", "{tmp}/g.tiff2"],
     "{tmp}/g.tiff2: cannot write a picture as .tiff2"),
])
def test_query_tool_errors_are_one_line(args, message, built, data, tmp_path, capsys):
    q = gallery_files(data)[0]
    odd = tmp_path / "person.jpg"
    shutil.copy(q, odd)
    fill = {"tmp": tmp_path, "built": built, "q": q, "odd": odd}
    code = tool_main("query")([a.format(**fill) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith(f"error: {message.format(**fill)}")
    assert capsys.readouterr().out == ""  # no results printed first


def test_results_whose_files_moved_are_flagged(tmp_path, run_dir, data, capsys):
    folder = tmp_path / "images"
    files = _copy_some(data, folder, 6)
    index = tmp_path / "g"
    build_gallery([folder], index, run_dir, progress=False, log=lambda _: None)
    moved = tmp_path / "moved"
    folder.rename(moved)
    query = moved / files[0].name
    code = tool_main("query")(["--index", str(index), "--image", str(query), "--top-k", "3"])
    captured = capsys.readouterr()
    assert code == 0 and str(files[0]) in captured.out  # the ranking still stands
    (warning,) = captured.err.strip().splitlines()
    assert warning.startswith("warning: 3 of the results no longer exist on disk")
    folder.mkdir()
    shutil.copy(moved / files[0].name, folder)  # one back in place: not counted
    tool_main("query")(["--index", str(index), "--image", str(query), "--top-k", "6"])
    assert "warning: 5 of the results no longer exist" in capsys.readouterr().err


def _paths_in(index: pathlib.Path) -> list[str]:
    return [e.path for e in GalleryIndex.load(index).entries()]


def test_a_file_is_indexed_once_however_it_is_reached(tmp_path, run_dir, data):
    folder = tmp_path / "images"
    files = _copy_some(data, folder, 4)
    index = tmp_path / "g"
    build = tool_main("build_index")
    assert build(["--model", str(run_dir), "--images", str(folder), "--index", str(index),
                  "--no-progress"]) == 0
    # The same folder through a symlink, and a byte-for-byte copy of one image elsewhere.
    (tmp_path / "link").symlink_to(folder)
    (tmp_path / "copies").mkdir()
    copy = tmp_path / "copies" / "0999_c9s1_000001_00.jpg"
    shutil.copy(files[0], copy)
    report = build_gallery([tmp_path / "link", copy], index, append=True, progress=False,
                           log=lambda _: None)
    assert report.added == 0 and not report.saved and len(report.duplicates) == 5
    assert report.copies == [(str(copy), str(files[0]))]
    assert f"same content as {files[0]}: {copy}" in report.format()
    assert _paths_in(index) == [str(f) for f in files]


def test_moved_images_are_recognised_or_relocated(tmp_path, run_dir, data, capsys):
    folder = tmp_path / "images"
    files = _copy_some(data, folder, 5)
    index = tmp_path / "g"
    build_gallery([folder], index, run_dir, progress=False, log=lambda _: None)
    vectors = np.asarray(GalleryIndex.load(index).vectors).copy()
    moved = tmp_path / "moved"
    folder.rename(moved)

    # Re-appending the moved folder updates the paths; nothing is embedded twice.
    report = build_gallery([moved], index, append=True, progress=False, log=lambda _: None)
    assert report.added == 0 and report.saved and len(report.moved) == 5
    assert report.moved[0] == (str(files[0]), str(moved / files[0].name))
    assert "recognised 5 as moved" in report.format()
    assert _paths_in(index) == [str(moved / f.name) for f in files]
    np.testing.assert_array_equal(GalleryIndex.load(index).vectors, vectors)
    query = moved / files[1].name
    assert tool_main("query")(["--index", str(index), "--image", str(query), "--top-k", "5"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and str(query) in captured.out

    # --relocate does the same without reading the images, and checks it is the right folder.
    build = tool_main("build_index")
    again = tmp_path / "again"
    moved.rename(again)
    assert build(["--index", str(index), "--relocate", str(moved), str(again)]) == 0
    assert capsys.readouterr().out == (f"index {index}: updated, 5 image paths moved from "
                                       f"{moved} to {again}\n")
    assert _paths_in(index) == [str(again / f.name) for f in files]
    partial = tmp_path / "partial"  # moved again, and one image lost on the way
    again.rename(partial)
    (partial / files[2].name).unlink()
    impostor = tmp_path / "impostor"  # the same file names, other images
    impostor.mkdir()
    for f, other in zip(files, gallery_files(data)[10:]):
        shutil.copy(other, impostor / f.name)
    before = (index / "CURRENT").read_text()
    assert build(["--index", str(index), "--relocate", str(again), str(impostor)]) == 1
    assert capsys.readouterr().err.startswith(
        f"error: {impostor / files[0].name}: its content differs from the image indexed as "
        f"{again / files[0].name}")
    assert build(["--index", str(index), "--relocate", str(again), str(tmp_path / "none")]) == 1
    assert capsys.readouterr().err.startswith(
        f"error: {tmp_path / 'none'}: none of the 5 images gone from {again} is there")
    assert build(["--index", str(index), "--relocate", str(moved), str(again)]) == 1
    assert capsys.readouterr().err == (f"error: {moved}: no indexed image is in this folder "
                                       f"(they are under {again})\n")
    assert build(["--index", str(index), "--relocate", str(again), str(impostor), "--append",
                  "--set", "index.type=hnsw"]) == 1
    assert capsys.readouterr().err == ("error: --relocate only rewrites paths; it takes no "
                                       "--append, --set\n")
    assert build(["--index", str(index), "--relocate", str(again), str(again) + "/"]) == 1
    assert capsys.readouterr().err == (f"error: {again}: the same folder as {again}; nothing "
                                       f"to relocate\n")
    assert build(["--index", str(index), "--relocate", str(partial), str(again)]) == 1
    assert capsys.readouterr().err == (f"error: {partial}: no indexed image is in this folder "
                                       f"(they are under {again})\n")
    assert (index / "CURRENT").read_text() == before
    assert build(["--index", str(index), "--relocate", str(again), str(partial)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        f"  warning: 1 of them are not at their new path (queries will flag them), e.g. "
        f"{partial / files[2].name}")


def test_relocate_leaves_images_that_did_not_move_alone(tmp_path, run_dir, data, capsys):
    folder = tmp_path / "n"
    files = _copy_some(data, folder, 3)
    (folder / "sub").mkdir()
    inner = folder / "sub" / files[2].name
    files[2].rename(inner)
    index = tmp_path / "g"
    build_gallery([folder, folder / "sub"], index, run_dir, progress=False, log=lambda _: None)
    # One image moves into the subfolder: relocating n to n/sub must not touch the others.
    files[0].rename(folder / "sub" / files[0].name)
    report = relocate_gallery(index, folder, folder / "sub", log=lambda _: None)
    assert (report.moved, report.stayed, report.missing, report.unchecked) == (1, 2, [], 0)
    assert "kept 2 paths whose files are still where they were indexed" in report.format()
    assert _paths_in(index) == [str(folder / "sub" / files[0].name), str(files[1]), str(inner)]
    with pytest.raises(GalleryError, match="all 3 indexed images in it are still there"):
        relocate_gallery(index, folder, tmp_path, log=lambda _: None)
    # A single file is a folder of one.
    target = tmp_path / "renamed.jpg"
    files[1].rename(target)
    assert relocate_gallery(index, files[1], target, log=lambda _: None).moved == 1
    assert _paths_in(index)[1] == str(target)


def test_labels_come_from_the_name_given_and_the_path_stored_is_the_file(tmp_path, run_dir,
                                                                         data):
    """A folder of links named in the Market-1501 style, pointing at files named otherwise."""
    raw, links = tmp_path / "raw", tmp_path / "links"
    raw.mkdir()
    links.mkdir()
    for n, f in enumerate(gallery_files(data)[:3]):
        shutil.copy(f, raw / f"frame{n}.jpg")
        (links / f.name).symlink_to(raw / f"frame{n}.jpg")
    index = tmp_path / "g"
    build_gallery([links], index, run_dir, progress=False, log=lambda _: None)
    entries = GalleryIndex.load(index).entries()
    expected = [read_market1501(data).gallery[i] for i in range(3)]
    assert [e.path for e in entries] == [str(raw / f"frame{n}.jpg") for n in range(3)]
    assert [(e.pid, e.camid) for e in entries] == [(r.pid, r.camid) for r in expected]


def test_appending_to_a_format_1_index_records_its_digests(tmp_path, run_dir, data):
    folder = tmp_path / "images"
    files = _copy_some(data, folder, 4)
    index = tmp_path / "g"
    build_gallery([folder], index, run_dir, progress=False, log=lambda _: None)
    write_format_1(index / (index / "CURRENT").read_text().strip())
    moved = tmp_path / "moved"
    folder.rename(moved)
    folder.mkdir()  # one image back at its indexed path, so it can be digested
    shutil.copy(moved / files[0].name, folder / files[0].name)
    lines: list[str] = []
    report = build_gallery([moved], index, append=True, progress=False, log=lines.append)
    # Only the file still at its indexed path could be digested, so only it is recognised;
    # the others moved before their digests were kept, and are new to the index (--relocate
    # is the repair for a format-1 index whose images moved).
    assert report.digested == 1 and "recording the content digests of 1 images" in lines[-1]
    assert report.added == 3 and report.copies == [(str(moved / files[0].name),
                                                    str(folder / files[0].name))]
    version = index / (index / "CURRENT").read_text().strip()
    assert json.loads((version / "manifest.json").read_text())["format_version"] == 3
    entries = GalleryIndex.load(index).entries()
    assert [e.digest is None for e in entries] == [False, True, True, True, False, False, False]


@pytest.mark.slow
def test_command_line_end_to_end(tmp_path, run_dir, data):
    """The real commands in fresh processes, once each: exit codes and stdout."""
    def run(name, *args):
        return subprocess.run([sys.executable, str(ROOT / "tools" / f"{name}.py"), *map(str, args)],
                              capture_output=True, text=True, cwd=ROOT, timeout=300)

    files = gallery_files(data)
    done = run("build_index", "--model", run_dir, "--images", data / "bounding_box_test",
               "--index", tmp_path / "g", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert f"added {len(files)}, skipped 0 as duplicates, skipped 0 as unreadable" in done.stdout
    done = run("query", "--index", tmp_path / "g", "--image", files[1], "--json")
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)
    hits = result["hits"]
    assert hits[0]["path"] == str(files[1]) and hits[0]["score"] == pytest.approx(1, abs=1e-4)


# --- one writer at a time, lost pointers (issue 16) -----------------------------------------
_HOLD_LOCK = """
import pathlib, sys, time
from reid.index.versioned_folder import writer_lock
with writer_lock(pathlib.Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(600)
"""


def _line(process: subprocess.Popen, timeout: float) -> str:
    """The next line ``process`` prints, or a failure after ``timeout`` seconds (no hang)."""
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        process.kill()
        pytest.fail(f"no output from {process.args[:2]} within {timeout:g} s")
    return process.stdout.readline()


def test_concurrent_appends_wait_for_each_other_and_lose_nothing(tmp_path, run_dir, data):
    """Two real build_index processes append to one index while a third holds its lock."""
    from reid.index.versioned_folder import writer_lock

    files = gallery_files(data)
    queries = sorted((data / "query").glob("*.jpg"))
    index = tmp_path / "g"
    build_gallery([str(f) for f in files[:2]], index, run_dir, progress=False, log=lambda _: None)
    writers = []
    with writer_lock(index):
        for images in (files[2:], queries):
            writers.append(subprocess.Popen(
                [sys.executable, str(ROOT / "tools" / "build_index.py"), "--append",
                 "--index", str(index), "--no-progress", "--images", *map(str, images)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT))
        for writer in writers:  # both are blocked on the lock before it is released
            assert "waiting for another process to finish writing (pid" in _line(writer, 300)
    outputs = [w.communicate(timeout=300) for w in writers]
    assert [w.returncode for w in writers] == [0, 0], [err for _, err in outputs]
    paths = sorted(e.path for e in GalleryIndex.load(index).entries())
    assert paths == sorted(str(f) for f in files + queries)


def test_a_busy_index_times_out_with_a_clear_error(tmp_path, run_dir, data):
    from reid.index.versioned_folder import writer_lock

    files = gallery_files(data)
    index = tmp_path / "g"
    build_gallery([str(f) for f in files[:2]], index, run_dir, progress=False, log=lambda _: None)
    with writer_lock(index):
        with pytest.raises(GalleryError, match=r"g: another process is writing this index "
                                               r"\(pid \d+.*gave up after waiting 0.2 s"):
            build_gallery([str(files[2])], index, append=True, lock_timeout=0.2,
                          progress=False, log=lambda _: None)
    assert len(GalleryIndex.load(index)) == 2


def test_a_killed_writer_leaves_no_lock_behind(tmp_path, run_dir, data):
    files = gallery_files(data)
    index = tmp_path / "g"
    build_gallery([str(f) for f in files[:2]], index, run_dir, progress=False, log=lambda _: None)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(index)],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert _line(holder, 120).strip() == "locked"
    with pytest.raises(GalleryError, match="another process is writing this index"):
        build_gallery([str(files[2])], index, append=True, lock_timeout=0,
                      progress=False, log=lambda _: None)
    holder.kill()
    holder.wait(timeout=60)
    holder.stdout.close()
    report = build_gallery([str(files[2])], index, append=True, lock_timeout=0,
                           progress=False, log=lambda _: None)
    assert report.saved and report.count == 3


def test_a_lost_current_is_refused_naming_the_version_to_restore(tmp_path, run_dir, data):
    files = gallery_files(data)
    index = tmp_path / "g"
    build_gallery([str(f) for f in files[:3]], index, run_dir, progress=False, log=lambda _: None)
    (index / "CURRENT").unlink()
    restore = f"echo v000001 > {index / 'CURRENT'}"
    for append in (True, False):
        with pytest.raises(GalleryError,
                           match=f"CURRENT is missing.*`{re.escape(restore)}`.*overwrite the "
                                 f"index"):
            build_gallery([str(files[3])], index, run_dir, append=append, progress=False,
                          log=lambda _: None)
    with pytest.raises(GalleryError, match="the newest is v000001"):
        GalleryIndex.load(index)
    assert (index / "v000001" / "manifest.json").is_file()  # nothing was deleted
    (index / "CURRENT").write_text("v000001\n")  # what the message says to do
    assert len(GalleryIndex.load(index)) == 3
    (index / "CURRENT").write_text("garbage\n")
    report = build_gallery([str(files[3])], index, run_dir, overwrite=True, progress=False,
                           log=lambda _: None)
    assert report.count == 1 and sorted(p.name for p in index.iterdir()) == [
        "CURRENT", "LOCK", "v000002"]


def test_a_failed_build_of_a_new_index_leaves_no_folder(tmp_path, data):
    with pytest.raises(GalleryError, match="model is required to build a new index"):
        build_gallery([data / "query"], tmp_path / "new", progress=False, log=lambda _: None)
    assert not (tmp_path / "new").exists()


def test_relocating_a_format_1_index_says_what_it_could_not_check(tmp_path, run_dir, data):
    folder = tmp_path / "images"
    _copy_some(data, folder, 3)
    index = tmp_path / "g"
    build_gallery([folder], index, run_dir, progress=False, log=lambda _: None)
    write_format_1(index / (index / "CURRENT").read_text().strip())
    folder.rename(tmp_path / "moved")
    report = relocate_gallery(index, folder, tmp_path / "moved", log=lambda _: None)
    assert report.moved == 3 and report.unchecked == 3
    assert report.format().splitlines()[-1] == (
        "  warning: the content of 3 of them was not checked (indexed before digests were "
        "kept)")


# --- match thresholds (issue 18) --------------------------------------------------------------

def _query_json(main, capsys, *args) -> dict:
    assert main(["--json", *map(str, args)]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    return result


def test_query_threshold_marks_matches_and_no_match(built, data, run_dir, tmp_path, capsys):
    from reid.calibration import GalleryRule, calibrate, with_calibration

    main = tool_main("query")
    query = sorted((data / "query").glob("*.jpg"))[0]
    ranked = _query_json(main, capsys, "--index", built, "--image", query, "--top-k", "4",
                         "--threshold", "none")
    scores = [h["score"] for h in ranked["hits"]]
    assert ranked["threshold"] is None and all(h["match"] is None for h in ranked["hits"])

    between = (scores[1] + scores[2]) / 2
    result = _query_json(main, capsys, "--index", built, "--image", query, "--top-k", "4",
                         "--threshold", between)
    assert result["threshold"] == between and result["in_gallery"] is True
    assert [h["match"] for h in result["hits"]] == [s >= between for s in scores] == [
        True, True, False, False]

    above = (scores[0] + 1) / 2
    assert main(["--index", str(built), "--image", str(query), "--top-k", "4",
                 "--threshold", str(above)]) == 0
    out = capsys.readouterr().out
    assert f"not in the gallery: the best score, {scores[0]:.4f}, is below the match " \
           f"threshold {above:.4f}" in out
    assert out.count("     no  ") == 4 and f"match threshold {above:.4f} (given)" in out
    result = _query_json(main, capsys, "--index", built, "--image", query, "--threshold", above)
    assert result["in_gallery"] is False and not any(h["match"] for h in result["hits"])

    # A calibrated copy of the model (same weights, same fingerprint): its threshold is the
    # default, and auto names it.
    calibrated = tmp_path / "calibrated"
    shutil.copytree(run_dir / "model", calibrated)
    # FAR 1e-2 lets the 10 impostors at 1.0 through and rejects the 990 at ``between``.
    impostor = np.r_[np.ones(10), np.full(990, between)]
    spec = json.loads((calibrated / "spec.json").read_text())
    calibration = calibrate([scores[0]], impostor, "hand-made pairs")
    (calibrated / "spec.json").write_text(json.dumps(with_calibration(spec, calibration)))
    # Calibrated before gallery rules existed: the default is the per-pair threshold, as
    # before; auto asks for a gallery rule it does not have.
    for asked in ((), ("--threshold", "pair")):
        result = _query_json(main, capsys, "--index", built, "--image", query, "--top-k", "4",
                             "--model", calibrated, *asked)
        assert result["threshold"] == calibration.threshold(1e-2) and result["fpir"] is None
        assert [h["match"] for h in result["hits"]] == [True, True, False, False]
    assert main(["--index", str(built), "--image", str(query), "--model", str(calibrated),
                 "--threshold", "auto"]) == 1
    assert "has no gallery-level rule for crops" in capsys.readouterr().err

    # With a gallery rule (a hand-made line per rate), auto is the default: the threshold is
    # the line's value at this gallery's size, for the rate asked.
    count = len(json.loads(_query_raw(main, capsys, built, query))[0]["hits"])
    rule = GalleryRule("crops", (0.1, 0.01), (between - 0.1, between),
                       (0.0, 0.01), (10, 100), 500)
    (calibrated / "spec.json").write_text(json.dumps(with_calibration(spec, dataclasses.replace(
        calibration, gallery={"crops": rule}))))
    result = _query_json(main, capsys, "--index", built, "--image", query, "--top-k", "4",
                         "--model", calibrated)
    size = result["gallery_size"]
    assert size >= count and result["fpir"] == 0.1  # the default rate
    assert result["threshold"] == pytest.approx(between - 0.1) and result["fpir"] == 0.1
    assert result["answer"] == "present in the gallery"
    result = _query_json(main, capsys, "--index", built, "--image", query, "--top-k", "4",
                         "--model", calibrated, "--fpir", "0.01")
    assert result["threshold"] == pytest.approx(between + 0.01 * np.log(size))
    assert result["answer"] == ("present in the gallery" if scores[0] >= result["threshold"]
                                else "not in the gallery")
    assert main(["--index", str(built), "--image", str(query), "--threshold", "pair",
                 "--fpir", "0.1"]) == 1
    assert capsys.readouterr().err.startswith("error: --fpir 0.1: ")
    assert main(["--index", str(built), "--image", str(query), "--fpir", "0.5"]) == 1
    assert capsys.readouterr().err.startswith("error: --fpir 0.5")


def _query_raw(main, capsys, index, query) -> str:
    assert main(["--json", "--index", str(index), "--image", str(query), "--top-k", "1000",
                 "--threshold", "none"]) == 0
    return capsys.readouterr().out


def test_query_threshold_errors(built, data, capsys):
    main = tool_main("query")
    query = sorted((data / "query").glob("*.jpg"))[0]
    assert main(["--index", str(built), "--image", str(query), "--threshold", "auto"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --threshold auto:") and "tools/calibrate.py" in err
    for bad in ("1.5", "high"):
        assert main(["--index", str(built), "--image", str(query), "--threshold", bad]) == 1
        assert capsys.readouterr().err.startswith(f"error: --threshold {bad}")


def test_grid_fades_results_below_the_threshold(data):
    from reid.index.grid import RED, GridItem, GridRow, render_grid

    files = gallery_files(data)[:4]
    scores = (0.9, 0.8, 0.4, 0.3)

    def row(threshold):
        return [GridRow(GridItem(str(files[0])), [
            GridItem(str(f), score, rank=i + 1, match=None if threshold is None
                     else score >= threshold) for i, (f, score) in enumerate(zip(files, scores))])]

    plain = render_grid(row(None), cell_height=64).astype(int)
    cut = render_grid(row(0.5), cell_height=64).astype(int)
    none = render_grid(row(0.95), cell_height=64).astype(int)
    width = 48 + 6  # cell plus its frame (FRAME 3 on each side)
    first = 6 + width + 16  # the first result's left edge

    def cell(picture, c):
        x = first + c * (width + 6)
        return picture[9:9 + 64, x + 3:x + 3 + 48]

    for c in (0, 1):  # matches are drawn as they are
        assert np.array_equal(cell(cut, c), cell(plain, c))
    for c in (2, 3):  # the rest are faded towards white
        assert cell(cut, c).mean() > cell(plain, c).mean() + 10
    # A red bar stands between the last match and the first non-match.
    bar = first + 2 * (width + 6) - 3
    assert (cut[6:6 + 70, bar] == RED).all()
    assert not (plain[6:6 + 70, bar] == RED).all()
    # Nothing matches: every result faded and the query's caption changes.
    assert all(cell(none, c).mean() > cell(plain, c).mean() + 10 for c in range(4))
    assert not np.array_equal(none[80:110, 6:6 + width], plain[80:110, 6:6 + width])


def test_printed_scores_and_threshold_read_as_decided():
    """Issue 29, worked by hand: the ranked table and the footage listing print a rejected score
    so that it does not read as the threshold, and otherwise as before."""
    from reid.calibration import MatchThreshold
    from reid.index import ModelInfo
    from reid.index.appearances import (Appearance, AppearanceQuery, AppearanceResult,
                                        format_appearances)
    from reid.index.gallery import Hit
    from reid.index.query import QueryResult, format_results

    under = 0.9999993443489075  # a float32 score of a collapsed model
    hits = [Hit(1, under, 7, "/g/a.jpg", 3, 1), Hit(2, 0.25, 8, "/g/b.jpg", 4, 2)]
    text = format_results([QueryResult("q.jpg", 1, 1, hits, 0.1, MatchThreshold(1.0, "given"))],
                          2)
    assert text.splitlines()[1:] == [
        "match threshold 1.000000 (given)",
        "rank     score  match    pid  cam  path",
        "   1  0.999999     no      3    1  /g/a.jpg",
        "   2  0.250000     no      4    2  /g/b.jpg",
        "not in the gallery: the best score, 0.999999, is below the match threshold "
        "1.000000"]
    text = format_results([QueryResult("q.jpg", 1, 1, hits, 0.1, MatchThreshold(0.5, "given"))],
                          2)
    assert "match threshold 0.5000 (given)" in text and "   1  1.0000    yes" in text

    def appearance(rank: int, score: float, match: bool) -> Appearance:
        return Appearance(rank, score, "B", rank, 1.0, 2.0, None, None, "/v/B.avi", 10,
                          (1, 2, 3, 4), None, None, None, 3, match)

    gallery = GalleryIndex(ModelInfo(fingerprint="f" * 64, embedding_dim=4, model_dir="/m"))
    found = [appearance(1, 0.96, True), appearance(2, 0.5986, False)]
    result = AppearanceResult(AppearanceQuery("q.jpg"), found, 0.1, MatchThreshold(0.5989, "t"))
    lines = format_appearances([result], gallery).splitlines()
    # At 2 decimals 0.5986 would read "0.60 no match" beside a threshold of "0.60".
    assert lines[1:] == ["match threshold 0.5989 (t)",
                         "  1. camera B  00:00:01.0-00:00:02.0  score 0.9600  track 1  match",
                         "  2. camera B  00:00:01.0-00:00:02.0  score 0.5986  track 2  no match",
                         "seen in camera B at 00:00:01.0-00:00:02.0"]
    found = [appearance(1, 0.96, True), appearance(2, 0.31, False)]
    result = AppearanceResult(AppearanceQuery("q.jpg"), found, 0.1, MatchThreshold(0.5989, "t"))
    lines = format_appearances([result], gallery).splitlines()
    assert lines[1] == "match threshold 0.60 (t)" and "score 0.31  track 2  no match" in lines[3]



def test_calibrate_needs_no_training_split(tmp_path, run_dir, data, monkeypatch, capsys):
    """Issue 29: tools/calibrate.py refused a folder of query and gallery images, as the README
    describes it, for want of bounding_box_train/, a split it never reads. (Everything before
    embedding is run; the embedding itself is tested with the trained model in
    tests/test_calibration.py, and costs seconds.)"""
    from reid.modeling import Embedder
    from reid.modeling.errors import ModelError

    site = tmp_path / "site"
    for split in ("query", "bounding_box_test"):
        shutil.copytree(data / split, site / split)
    model = shutil.copytree(run_dir / "model", tmp_path / "model")

    def reached(model_dir, runtime="auto"):
        raise ModelError(f"embedding with {model_dir}")

    monkeypatch.setattr(Embedder, "load", reached)
    assert tool_main("calibrate")(["--model", str(model), "--data-root", str(site),
                                   "--no-progress"]) == 1
    assert capsys.readouterr().err == f"error: embedding with {model}\n"
