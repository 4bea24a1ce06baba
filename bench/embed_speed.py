"""Embedding speed by runtime, and what it does to indexing and querying, in one run.

    .venv/bin/python bench/embed_speed.py [--gallery data/synthetic/bounding_box_train]
                                          [--demo-model runs/bench-demo/run/model]
                                          [--weights ../shared/weights/...h5] [--rounds 3]

1. For MobileNetV2 alpha 1.0 at 256x128 (ImageNet weights when the file is there) and the demo's
   model (alpha 0.5 at 96x48), converts to LiteRT float32 / float16 / int8 and ONNX, then,
   alternating runtimes round by round, measures images/s at batch 64 and the median time of
   one image alone. Ratios are to Keras in the same run.
2. ``tools/build_index.py`` end to end (process start to saved index, decoding included) on the
   gallery folder, ``--runtime keras`` against ``auto``, alternating.
3. ``tools/query.py`` wall time per call (process start to printed result) on that index.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid.utils.quiet import start_tensorflow_quietly  # noqa: E402

RUNTIMES = ("keras", "litert", "litert-float16", "litert-int8", "onnx")
TARGETS = {"batch-64 throughput vs keras": 2.0, "batch-1 latency vs keras": 5.0,
           "build_index end to end vs keras": 1.8}
QUERY_TARGET_SECONDS = 1.5


def healthy_random_model(height: int, width: int, alpha: float, images: np.ndarray):
    """Random weights with batch norms set to the crops' statistics (see tests/test_runtime.py);
    ``images``: the crops' RGB pixels."""
    import keras

    from reid.config import ModelConfig
    from reid.data.preprocessing import normalize_pixels
    from reid.modeling import build_reid_model

    keras.utils.set_random_seed(0)
    model = build_reid_model(ModelConfig(alpha=alpha, weights=None), (height, width, 3),
                             num_classes=10).embedding_model
    norms = [layer for layer in _walk(model) if isinstance(layer, keras.layers.BatchNormalization)]
    for bn in norms:
        bn.momentum = 0.0
    model(normalize_pixels(images), training=True)
    for bn in norms:
        bn.momentum = 0.9
    return model


def _walk(layer):
    yield layer
    for sub in getattr(layer, "layers", []):
        yield from _walk(sub)


def make_export(folder: pathlib.Path, crops: list[str], weights: pathlib.Path | None,
                demo_model: pathlib.Path | None, size: str) -> str:
    """Write the export of ``size`` into ``folder``; returns what it is."""
    from reid.config import ModelConfig
    from reid.data.pipeline import eval_dataset
    from reid.modeling import build_reid_model, export_embedder
    from reid.modeling.spec import MODEL_FILE, SPEC_FILE

    if size == "demo":
        if demo_model is not None and (demo_model / SPEC_FILE).is_file():
            shutil.copytree(demo_model, folder)
            for extra in folder.glob("embedder.*"):  # the conversions: this bench makes its own
                if extra.name != MODEL_FILE:
                    extra.unlink()
            return f"the demo's trained model ({demo_model})"
        images = np.concatenate([np.asarray(b) for b in eval_dataset(crops, 96, 48, 64)])
        export_embedder(healthy_random_model(96, 48, 0.5, images), folder)
        return "alpha 0.5 at 96x48, random weights (no demo model found)"
    if weights is not None and weights.is_file():
        models = build_reid_model(ModelConfig(alpha=1.0, weights=str(weights)), (256, 128, 3),
                                  num_classes=10)
        export_embedder(models.embedding_model, folder)
        return f"alpha 1.0 at 256x128, ImageNet weights ({weights.name})"
    images = np.concatenate([np.asarray(b) for b in eval_dataset(crops, 256, 128, 64)])
    export_embedder(healthy_random_model(256, 128, 1.0, images), folder)
    return "alpha 1.0 at 256x128, random weights (no ImageNet weights file)"


def measure_runtimes(folder: pathlib.Path, crops: list[str], rounds: int, batches: int
                     ) -> dict[str, dict[str, float]]:
    from reid.data.pipeline import eval_dataset
    from reid.modeling import Embedder
    from reid.modeling.convert import Tolerance, convert_with_images
    from reid.modeling.spec import CONVERTED

    for name in RUNTIMES[1:]:
        # Speed is the point here: int8 of random weights is kept whatever its parity.
        record = convert_with_images(folder, CONVERTED[name], crops, crops, log=lambda _: None,
                                     tolerance=Tolerance(-1.0, 0.0))
        parity = record["parity"]
        print(f"  {name:<15} parity: min cosine {parity['min_cosine']:.6f}, top-10 agreement "
              f"{parity['top10_agreement']:.3f}, max |diff| {parity['max_abs_diff']:.2g}",
              flush=True)
    embedders = {name: Embedder.load(folder, runtime=name) for name in RUNTIMES}
    height, width = embedders["keras"].input_size
    images = np.concatenate([np.asarray(b) for b in eval_dataset(crops, height, width, 64)])
    batch = np.resize(images, (64, height, width, 3)).astype(np.float32)
    one = images[:1]
    throughput: dict[str, list[float]] = {name: [] for name in RUNTIMES}
    latency: dict[str, list[float]] = {name: [] for name in RUNTIMES}
    for name, embedder in embedders.items():  # warm up (traces, allocations)
        embedder.embed(batch)
        embedder.embed(one)
    for _ in range(rounds):
        for name, embedder in embedders.items():
            start = time.perf_counter()
            for _ in range(batches):
                embedder.embed(batch)
            throughput[name].append(64 * batches / (time.perf_counter() - start))
            singles = []
            for _ in range(20):
                start = time.perf_counter()
                embedder.embed(one)
                singles.append(time.perf_counter() - start)
            latency[name].append(statistics.median(singles) * 1000)
    return {name: {"images_per_s": statistics.median(throughput[name]),
                   "ms_one": statistics.median(latency[name])} for name in RUNTIMES}


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=pathlib.Path,
                        default=ROOT / "data" / "synthetic" / "bounding_box_train",
                        help="crops to index (at least 10,000 for the query figure); "
                             "make them with make demo or tools/make_synthetic.py")
    parser.add_argument("--demo-model", type=pathlib.Path,
                        default=ROOT / "runs" / "bench-demo" / "run" / "model")
    parser.add_argument("--weights", type=pathlib.Path, default=ROOT.parent / "shared" /
                        "weights" / "mobilenet_v2_1.0_imagenet_no_top.weights.h5")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=5, help="batches of 64 per measurement")
    parser.add_argument("--queries", type=int, default=3, help="tools/query.py calls per runtime")
    args = parser.parse_args()
    start_tensorflow_quietly()
    if not args.gallery.is_dir():
        raise SystemExit(f"{args.gallery}: gallery folder not found (run make demo, or "
                         f"tools/make_synthetic.py, or pass --gallery)")
    gallery = sorted(str(p) for p in args.gallery.iterdir() if p.suffix == ".jpg")
    crops = gallery[::max(1, len(gallery) // 256)][:256]
    python = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").is_dir() else sys.executable
    print(f"machine: {os.cpu_count()} cores; gallery {args.gallery} ({len(gallery)} crops)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        exports = {}
        for size in ("256x128", "demo"):
            folder = tmp / size
            what = make_export(folder, crops, args.weights, args.demo_model, size)
            print(f"\n{size}: {what}", flush=True)
            exports[size] = folder
            speed = measure_runtimes(folder, crops, args.rounds, args.batches)
            keras = speed["keras"]
            print(f"  {'runtime':<15} {'images/s b64':>12} {'x keras':>8} {'ms one':>8} "
                  f"{'keras/x':>8}")
            for name, s in speed.items():
                print(f"  {name:<15} {s['images_per_s']:>12.0f} "
                      f"{s['images_per_s'] / keras['images_per_s']:>8.2f} {s['ms_one']:>8.2f} "
                      f"{keras['ms_one'] / s['ms_one']:>8.1f}", flush=True)

        # Each model indexes and queries the gallery, through Keras and through auto.
        summary = []
        for size, rounds in (("demo", 3), ("256x128", 2)):
            model = exports[size]
            for f in model.glob("embedder.*.tflite*"):  # auto uses float32 only; keep it so
                f.unlink()
            build: dict[str, list[float]] = {"keras": [], "auto": []}
            for _ in range(rounds):
                for runtime in build:
                    index = tmp / f"index-{size}-{runtime}"
                    shutil.rmtree(index, ignore_errors=True)
                    build[runtime].append(timed([python, "tools/build_index.py", "--model",
                                                 str(model), "--images", str(args.gallery),
                                                 "--index", str(index), "--no-progress",
                                                 "--runtime", runtime]))
            print(f"\nbuild_index of {len(gallery)} crops, end to end ({size} model):")
            for runtime, seconds in build.items():
                best = min(seconds)
                print(f"  --runtime {runtime:<6} {best:6.1f} s  {len(gallery) / best:6.0f} "
                      f"images/s (runs: {', '.join(f'{s:.1f}' for s in seconds)})")
            queries: dict[str, list[float]] = {"keras": [], "auto": []}
            for i in range(args.queries):
                for runtime in queries:
                    queries[runtime].append(timed([python, "tools/query.py", "--index",
                                                   str(tmp / f"index-{size}-auto"), "--image",
                                                   gallery[i * 97], "--runtime", runtime]))
            print(f"tools/query.py, process start to printed result, {len(gallery)}-image "
                  f"index ({size} model):")
            for runtime, seconds in queries.items():
                print(f"  --runtime {runtime:<6} median {statistics.median(seconds):.2f} s "
                      f"(calls: {', '.join(f'{s:.2f}' for s in seconds)})")
            summary.append(f"{size}: build_index auto vs keras "
                           f"{min(build['keras']) / min(build['auto']):.2f}x (target "
                           f"{TARGETS['build_index end to end vs keras']}x), query with auto "
                           f"{statistics.median(queries['auto']):.2f} s (target "
                           f"{QUERY_TARGET_SECONDS} s)")
        print("\n" + "\n".join(summary))


if __name__ == "__main__":
    main()
