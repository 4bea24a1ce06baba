"""Converted exports and the runtimes that serve them: parity against Keras on real synthetic
crops, the ``auto`` choice, damaged and mismatched exports, quantized indexes, TensorFlow-free
queries and the TensorFlow-free decoder.

The model is MobileNetV2 alpha 0.35 at 64x32 with random weights whose batch norms are set to
the statistics of the crops, so its activations have the scale of a trained network's (at
initialisation they shrink to about 1e-10, which no quantization can represent).
"""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
import shutil
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest

from reid.config import ModelConfig, config_from_dict, save_config
from reid.data.decode import BadImageError, load_image_rgb
from reid.data.pipeline import eval_dataset, load_image
from reid.data.preprocessing import normalize_pixels, resize_weights
from reid.synthetic.crops import generate_dataset
from reid.index import GalleryIndex, IndexMismatchError
from reid.index.build import build_gallery
from reid.index.open import open_gallery
from reid.index.query import query_gallery
from reid.modeling import Embedder, ModelError, build_reid_model, convert, export_embedder
from reid.modeling.convert import (Tolerance, calibration_set, convert_with_images,
                                   parity_report, topk_agreement)
from reid.modeling.spec import CONVERTED
from tiny_model import standardise_batch_norms
from tool_runner import tool_main

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 64, 32
#: Random weights magnify rounding: float16 reaches a min cosine of about 0.996 on this model
#: (0.99999 on the demo's trained one, docs/BENCHMARKS.md), below the release tolerance.
LOOSE = Tolerance(0.99, 0.8)


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, ids=8, cameras=3, images_per_id=6, seed=2, height=HEIGHT, width=WIDTH,
                     workers=1)
    return sorted(str(p) for p in root.glob("*/*.jpg"))


def healthy_export(folder: pathlib.Path, crops: list[str], seed: int = 0) -> pathlib.Path:
    """A random-weight export whose batch norms hold the crops' statistics."""
    keras.utils.set_random_seed(seed)
    model = build_reid_model(ModelConfig(alpha=0.35, weights=None), (HEIGHT, WIDTH, 3),
                             num_classes=4).embedding_model
    images = np.concatenate([np.asarray(b) for b in eval_dataset(crops, HEIGHT, WIDTH, 64)])
    standardise_batch_norms(model, normalize_pixels(images))
    export_embedder(model, folder)
    return folder


@pytest.fixture(scope="module")
def healthy(tmp_path_factory, crops) -> pathlib.Path:
    """The healthy export of seed 0, unconverted (do not modify: copy it)."""
    return healthy_export(tmp_path_factory.mktemp("healthy") / "model", crops)


@pytest.fixture(scope="module")
def conversions(tmp_path_factory, healthy, crops
                ) -> tuple[pathlib.Path, dict[str, tuple[int, str]]]:
    """tools/export.py's float32 conversions of the healthy export, in a run folder whose
    dataset is not on this machine (so the crops come from --images): LiteRT given the export,
    ONNX given the run. The export, and each format's (exit code, printed text): one
    conversion of each for the whole file."""
    run = tmp_path_factory.mktemp("converted") / "run"
    shutil.copytree(healthy, run / "model")
    save_config(config_from_dict({"data": {"root": str(run.parent / "elsewhere")}}),
                run / "config.yaml")
    done = {}
    for name, model in (("litert", run / "model"), ("onnx", run)):
        with contextlib.redirect_stdout(io.StringIO()) as out:
            code = tool_main("export")(["--model", str(model), "--format", name,
                                        "--images", *crops])
        done[name] = (code, out.getvalue())
    return run / "model", done


@pytest.fixture(scope="module")
def converted(conversions) -> pathlib.Path:
    """An export with float32 LiteRT and ONNX conversions (do not modify)."""
    return conversions[0]


@pytest.fixture(scope="module")
def float16(tmp_path_factory, healthy, crops) -> tuple[pathlib.Path, dict]:
    """The healthy export with its float16 conversion, and the conversion's record (do not
    modify)."""
    folder = tmp_path_factory.mktemp("float16") / "model"
    shutil.copytree(healthy, folder)
    return folder, convert_with_images(folder, CONVERTED["litert-float16"], crops,
                                       log=lambda _: None, tolerance=LOOSE)


def images_of(paths: list[str]) -> np.ndarray:
    return np.stack([load_image(p, HEIGHT, WIDTH) for p in paths])


# --- parity: the measure itself --------------------------------------------------------------

def test_topk_agreement_hand_worked():
    # a and b are close, c and d are close; then b moves over to c.
    ref = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.9, 0.1]], float)
    moved = ref.copy()
    moved[1] = [0.2, 0.9, 0]
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    moved /= np.linalg.norm(moved, axis=1, keepdims=True)
    assert topk_agreement(ref, ref, k=1) == 1.0
    # Nearest neighbours: a->b, b->a, c->d, d->c before; a->b, b->c, c->d, d->c after.
    assert topk_agreement(ref, moved, k=1) == 0.75
    # With k=3 every row's neighbours are all the others.
    assert topk_agreement(ref, moved, k=3) == 1.0
    # Ties: when the reference cannot tell rows apart, any order of the other agrees with it.
    same = np.tile([[0.6, 0.8, 0.0]], (5, 1))
    assert topk_agreement(same, np.random.default_rng(0).normal(size=(5, 3)), k=2) == 1.0


def test_parity_report_numbers_and_verdict():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(20, 8))
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    flipped = ref.copy()
    flipped[5] = -ref[5]
    report = parity_report(ref, flipped, Tolerance(0.9999, 0.0))
    assert report["min_cosine"] == pytest.approx(-1.0)
    assert report["mean_cosine"] == pytest.approx(18 / 20)
    assert report["max_abs_diff"] == pytest.approx(2 * np.abs(ref[5]).max())
    assert report["images"] == 20 and not report["passed"]
    assert parity_report(ref, flipped, Tolerance(-1.0, 0.0))["passed"]
    assert parity_report(ref, 3 * ref, Tolerance(0.9999, 1.0))["passed"]  # length is no matter


# --- conversions -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["litert", "onnx"])
def test_float32_conversions_match_keras_and_share_its_fingerprint(converted, crops, name):
    keras_embedder = Embedder.load(converted, runtime="keras")
    served = Embedder.load(converted, runtime=name)
    assert served.runtime == name and served.precision == "float32"
    assert served.fingerprint == keras_embedder.fingerprint
    images = images_of(crops)
    a, b = keras_embedder.embed(images), served.embed(images)
    cosine = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.9999 and np.abs(a - b).max() < 1e-5
    record = json.loads((converted / CONVERTED[name].record).read_text())
    assert record["parity"]["passed"] and record["parity"]["images"] == len(crops)
    assert record["parity"]["min_cosine"] == pytest.approx(cosine.min(), abs=1e-6)
    assert record["versions"]["tensorflow"] and record["speed"]["images_per_s"] > 0


def test_float16_and_int8_have_their_own_fingerprints(tmp_path, float16, crops, monkeypatch):
    monkeypatch.setattr(convert, "MIN_CALIBRATION_IMAGES", len(crops))  # 48 distinct crops
    folder = tmp_path / "model"
    shutil.copytree(float16[0], folder)
    f16 = float16[1]
    assert f16["parity"]["min_cosine"] >= 0.99 and f16["precision"] == "float16"
    int8 = convert_with_images(folder, CONVERTED["litert-int8"], crops, crops,
                               log=lambda _: None, tolerance=Tolerance(-1.0, 0.0))
    assert int8["calibration_images"] == len(crops)
    # int8 of random weights is far from Keras: at the usual tolerance it is refused with the
    # numbers, nothing written (the converter gives the int8 model above again: one conversion).
    refused = tmp_path / "refused"
    shutil.copytree(float16[0], refused)
    int8_model = (folder / CONVERTED["litert-int8"].file).read_bytes()
    with monkeypatch.context() as patch:
        patch.setattr(convert, "_litert_bytes", lambda model, quantize, calibration: int8_model)
        with pytest.raises(ModelError, match=r"litert-int8 conversion is outside tolerance on "
                                             r"48 images: min cosine .* < 0.95 \(short by"):
            convert_with_images(refused, CONVERTED["litert-int8"], crops, crops,
                                log=lambda _: None)
    assert not (refused / CONVERTED["litert-int8"].file).exists()
    fingerprints = {Embedder.load(folder, runtime=r).fingerprint
                    for r in ("keras", "litert-float16", "litert-int8")}
    assert len(fingerprints) == 3
    # auto never picks a quantized export: its embeddings are not the Keras model's.
    assert Embedder.load(folder).runtime == "keras"


def test_int8_calibration_needs_enough_different_crops(tmp_path, converted, crops, capsys):
    # The probe's calibration set, a single 1x1 black image: refused before converting.
    folder = tmp_path / "calibration"
    folder.mkdir()
    cv2.imwrite(str(folder / "black.png"), np.zeros((1, 1, 3), np.uint8))
    assert tool_main("export")(["--model", str(converted), "--format", "litert", "--quantize",
                                "int8", "--images", *crops[:4], "--calibration",
                                str(folder)]) == 1
    assert capsys.readouterr().err == (
        f"error: {folder}: int8 calibration needs at least 100 different crops that are not of "
        f"one colour, got 0 (of 1 read: 1 of one colour, 0 repeated); calibrate on more of the "
        f"crops it will embed\n")
    assert not (converted / CONVERTED["litert-int8"].file).exists()
    # Crops of one colour and repeats do not count; 100 different ones do, 200 at most are used.
    rng = np.random.default_rng(0)
    different = rng.uniform(-1, 1, (250, 4, 2, 3)).astype(np.float32)
    one_colour = np.full((30, 4, 2, 3), 0.5, np.float32)
    one_colour[::2] = (1.0, -1.0, -1.0)  # solid red: one colour, though its values differ
    padded = np.concatenate([different[:99], one_colour, different[:50]])
    with pytest.raises(ModelError, match=r"^here: int8 calibration needs at least 100 different "
                                         r"crops .*, got 99 \(of 179 read: 30 of one colour, 50 "
                                         r"repeated\)"):
        calibration_set(padded, "here")
    kept = calibration_set(np.concatenate([one_colour, different[:100], different[:10]]), "here")
    np.testing.assert_array_equal(kept, different[:100])
    np.testing.assert_array_equal(calibration_set(different, "here"), different[:200])


def test_auto_picks_the_fastest_float32_conversion(tmp_path, converted):
    folder = tmp_path / "model"
    shutil.copytree(converted, folder)
    records = {name: json.loads((folder / CONVERTED[name].record).read_text())
               for name in ("litert", "onnx")}
    for fast, slow in (("litert", "onnx"), ("onnx", "litert")):
        for name, speed in ((fast, 500.0), (slow, 100.0)):
            records[name]["speed"]["images_per_s"] = speed
            (folder / CONVERTED[name].record).write_text(json.dumps(records[name]))
        assert Embedder.load(folder).runtime == fast
    for name in ("litert", "onnx"):
        (folder / CONVERTED[name].record).unlink()
    assert Embedder.load(folder).runtime == "keras"
    with pytest.raises(ModelError, match=f"{folder}: no litert export here; make it with "
                                         f"tools/export.py --model {folder} --format litert"):
        Embedder.load(folder, runtime="litert")


def test_auto_passes_over_a_runtime_that_is_not_installed(tmp_path, converted, monkeypatch):
    # ai-edge-litert has no Windows wheels, so it is installed only where it has: there the
    # fastest conversion present may have no runtime, and auto takes the next one.
    folder = tmp_path / "model"
    shutil.copytree(converted, folder)
    record = json.loads((folder / CONVERTED["litert"].record).read_text())
    record["speed"]["images_per_s"] = 1e9  # the fastest, were it installed
    (folder / CONVERTED["litert"].record).write_text(json.dumps(record))
    assert Embedder.load(folder).runtime == "litert"
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # import fails, as on Windows
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    assert Embedder.load(folder).runtime == "onnx"
    with pytest.raises(ModelError, match="LiteRT is not installed"):
        Embedder.load(folder, runtime="litert")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert Embedder.load(folder).runtime == "keras"
    # Training's closing LiteRT conversion is skipped with a note, not tried and failed.
    from types import SimpleNamespace

    from reid.engine.trainer import Trainer

    lines: list[str] = []
    Trainer.export_litert(SimpleNamespace(log=lines.append), folder)
    assert lines == ["note: no LiteRT export (ai-edge-litert is not installed here); the Keras "
                     "model serves, or convert for ONNX Runtime with tools/export.py"]


def damaged_litert_copy(converted: pathlib.Path, folder: pathlib.Path) -> pathlib.Path:
    """A copy of the converted export whose LiteRT file has one byte flipped; its .tflite."""
    shutil.copytree(converted, folder)
    tflite = folder / CONVERTED["litert"].file
    data = bytearray(tflite.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tflite.write_bytes(bytes(data))
    return tflite


def test_a_damaged_or_mismatched_conversion_is_named(tmp_path, converted, crops):
    folder = tmp_path / "model"
    tflite = damaged_litert_copy(converted, folder)
    with pytest.raises(ModelError, match=f"{tflite}: does not match its record "
                                         r"\(damaged or replaced\); convert again"):
        Embedder.load(folder, runtime="litert")
    with pytest.warns(UserWarning, match="does not match its record"):
        assert Embedder.load(folder).runtime == "onnx"  # the damaged one is passed over
    # A conversion of other weights beside an export (this one's, beside another export).
    other = healthy_export(tmp_path / "other", crops, seed=1)
    for name in (CONVERTED["litert"].file, CONVERTED["litert"].record):
        shutil.copy(converted / name, other / name)
    with pytest.raises(ModelError, match=r"embedder.tflite.json: converted from other weights"):
        Embedder.load(other, runtime="litert")
    onnx_record = folder / CONVERTED["onnx"].record
    good = json.loads(onnx_record.read_text())
    for broken in ("{", json.dumps({**good, "speed": None}),
                   json.dumps({**good, "speed": {"images_per_s": "fast"}}),
                   json.dumps({k: v for k, v in good.items() if k != "fingerprint"})):
        onnx_record.write_text(broken)
        with pytest.raises(ModelError, match=r"embedder.onnx.json: cannot read the conversion "
                                             r"record .*; convert again with tools/export.py"):
            Embedder.load(folder, runtime="onnx")


def test_auto_passing_over_a_damaged_conversion_warns_in_one_line(tmp_path, converted, crops,
                                                                  capsys):
    folder = tmp_path / "model"
    tflite = damaged_litert_copy(converted, folder)
    assert tool_main("build_index")(["--model", str(folder), "--images", *crops[:4], "--index",
                                     str(tmp_path / "g"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "runtime onnx" in captured.out
    assert captured.err == (f"warning: {tflite}: does not match its record (damaged or "
                            f"replaced); convert again with tools/export.py --model {folder} "
                            f"--format litert; using another runtime\n")


def test_a_file_the_pass_drops_but_that_decodes_is_still_embedded(converted, crops,
                                                                  monkeypatch):
    from reid.data import pipeline
    from reid.index.build import embed_images

    embedder = Embedder.load(converted, runtime="litert")
    paths = crops[:7]
    everything = embed_images(embedder, paths, 3, progress=False)
    real = pipeline.indexed_eval_dataset

    def dropping(*args, **kwargs):  # as if a transient error had hit position 4
        return real(*args, **kwargs).unbatch().filter(lambda i, _: i != 4).batch(3)

    monkeypatch.setattr(pipeline, "indexed_eval_dataset", dropping)
    good, vectors, bad = embed_images(embedder, paths, 3, progress=False)
    assert good == paths == everything[0] and bad == []
    np.testing.assert_allclose(vectors, everything[1], atol=1e-6)


def test_a_quantized_index_refuses_float_queries(tmp_path, float16, crops):
    folder = float16[0]
    index = tmp_path / "g"
    build_gallery(crops[::2], index, folder, runtime="litert-float16", progress=False,
                  log=lambda _: None)
    assert GalleryIndex.load(index).model.precision == "float16"
    with pytest.raises(IndexMismatchError, match="index was built with the float16 embeddings "
                                                 ".*these are float32.*with runtime "
                                                 "litert-float16"):
        open_gallery(index, runtime="keras")
    # auto keeps to the index's precision, for queries and for appending.
    gallery, embedder, _ = open_gallery(index)
    assert embedder.runtime == "litert-float16"
    hits = query_gallery(gallery, embedder, [crops[0]], k=1)[0].hits
    assert hits[0].path == crops[0] and hits[0].score == pytest.approx(1.0, abs=1e-5)
    report = build_gallery(crops[1::2], index, append=True, progress=False, log=lambda _: None)
    assert report.added == len(crops[1::2]) and "runtime litert-float16" in report.model_note


def test_a_converted_query_never_imports_tensorflow(tmp_path, converted, crops):
    index = tmp_path / "g"
    build_gallery(crops, index, converted, progress=False, log=lambda _: None)
    code = ("import sys\n"
            f"sys.path.insert(0, {str(ROOT / 'tools')!r})\n"
            "import query\n"
            f"code = query.main(['--index', {str(index)!r}, '--image', {crops[3]!r}, "
            "'--top-k', '2', '--json'])\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules, code)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    *results, last = done.stdout.strip().splitlines()
    assert last == "False False 0"
    assert json.loads("\n".join(results))[0]["hits"][0]["path"] == crops[3]
    assert done.stderr == ""  # no runtime start-up lines either


def test_export_tool(tmp_path, healthy, conversions, crops, capsys):
    model, done = conversions  # the fixture's two runs of the tool
    code, out = done["litert"]
    assert code == 0
    assert out.startswith(f"converting {model} to litert ...\nlitert: {model / 'embedder.tflite'}")
    assert f"parity on {len(crops)} images" in out
    assert "the Keras model's: indexes are shared" in out
    # A run whose dataset is not on this machine converts with --images alone.
    code, out = done["onnx"]
    assert code == 0 and f"parity on {len(crops)} images" in out
    folder = tmp_path / "model"
    shutil.copytree(healthy, folder)
    main = tool_main("export")
    assert main(["--model", str(folder), "--format", "onnx", "--quantize", "int8",
                 "--images", crops[0]]) == 1
    assert capsys.readouterr().err == ("error: onnx-int8: no such export (choose from litert, "
                                       "litert-float16, litert-int8, onnx) (--format, "
                                       "--quantize)\n")
    assert main(["--model", str(folder), "--format", "litert"]) == 1
    assert capsys.readouterr().err == (f"error: {folder}: no run config beside the export to "
                                       f"find crops in; give the images to check the "
                                       f"conversion on (--images)\n")
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in healthy.iterdir())


# --- the TensorFlow-free decoder --------------------------------------------------------------

def test_resize_weights_hand_worked():
    np.testing.assert_allclose(resize_weights(3, 3, antialias=True), np.eye(3))
    # 2x up, half-pixel centres: output 1 samples input 0.25 of the way from pixel 0 to 1.
    np.testing.assert_allclose(resize_weights(2, 4, antialias=False),
                               [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    # 2x down with antialiasing: a triangle twice as wide, normalised inside the image.
    np.testing.assert_allclose(resize_weights(4, 2, antialias=True)[0],
                               np.array([0.75, 0.75, 0.25, 0.0]) / 1.75)
    assert np.allclose(resize_weights(37, 5, antialias=True).sum(axis=1), 1.0)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".bmp"])
def test_the_decoder_sees_images_as_the_pipeline_does(tmp_path, suffix):
    rng = np.random.default_rng(0)
    for height, width in [(128, 64), (300, 140), (40, 20), (64, 32), (200, 20), (30, 90)]:
        image = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), np.uint8), (5, 5), 2)
        path = str(tmp_path / f"{height}x{width}{suffix}")
        cv2.imwrite(path, image)
        for size in [(64, 32), (256, 128)]:  # shrinking, growing and mixed
            np.testing.assert_allclose(normalize_pixels(load_image_rgb(path, *size)),
                                       normalize_pixels(load_image(path, *size)),
                                       atol=1e-4)


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an EXIF APP1 segment holding only an Orientation tag, as phones write."""
    tiff = (b"II*\x00" + (8).to_bytes(4, "little") + (1).to_bytes(2, "little")
            + (0x0112).to_bytes(2, "little") + (3).to_bytes(2, "little")
            + (1).to_bytes(4, "little") + orientation.to_bytes(2, "little") + b"\x00\x00"
            + (0).to_bytes(4, "little"))
    body = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


def test_the_decoder_ignores_exif_orientation_as_the_pipeline_does(tmp_path):
    image = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (80, 40, 3), np.uint8),
                             (5, 5), 2)
    path = tmp_path / "phone.jpg"
    path.write_bytes(with_exif_orientation(cv2.imencode(".jpg", image)[1].tobytes(), 6))
    rotated = cv2.imread(str(path))  # OpenCV's default would turn it
    assert rotated.shape[:2] == (40, 80)
    np.testing.assert_allclose(normalize_pixels(load_image_rgb(path, HEIGHT, WIDTH)),
                               normalize_pixels(load_image(str(path), HEIGHT, WIDTH)), atol=1e-4)


def test_the_decoder_refuses_what_it_cannot_read(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(BadImageError, match=f"{text}: cannot read or decode image"):
        load_image_rgb(text, HEIGHT, WIDTH)
    with pytest.raises(BadImageError, match="cannot read image"):
        load_image_rgb(tmp_path / "missing.jpg", HEIGHT, WIDTH)
