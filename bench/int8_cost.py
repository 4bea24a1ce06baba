"""What int8 (and float16) quantization costs in accuracy: mAP of one model's float32 embeddings
against its quantized ones, on a real query/gallery split.

    .venv/bin/python bench/int8_cost.py --model runs/NAME [--data-root ../shared/data/cuhk03]

Converts the run's export to LiteRT float32, float16 and int8 (int8 calibrated on the run's
training split) whatever their parity, so the cost is measured even where tools/export.py
would refuse the conversion, then scores each runtime with the run's evaluation settings.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid.utils.quiet import start_tensorflow_quietly  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=pathlib.Path, required=True, help="training run folder")
    parser.add_argument("--data-root", type=pathlib.Path,
                        default=ROOT.parent / "shared" / "data" / "cuhk03")
    args = parser.parse_args()
    start_tensorflow_quietly()
    from reid.config import load_config
    from reid.data import load_dataset
    from reid.engine.commands import run_evaluation
    from reid.modeling import resolve_model_dir
    from reid.modeling.convert import TOLERANCES, Tolerance, convert_with_images
    from reid.modeling.spec import CONVERTED
    from reid.run_layout import RunLayout

    model_dir = resolve_model_dir(args.model)
    cfg = load_config(RunLayout(args.model).config, [f"data.root={args.data_root}"])
    dataset = load_dataset(cfg.data)
    parity_paths = [r.path for r in dataset.query + dataset.gallery]
    rows = {}
    for name in ("litert", "litert-float16", "litert-int8"):
        record = convert_with_images(model_dir, CONVERTED[name], parity_paths,
                                     [r.path for r in dataset.train], log=lambda _: None,
                                     tolerance=Tolerance(-1.0, 0.0))
        p = record["parity"]
        usual = TOLERANCES[CONVERTED[name].quantize]
        verdict = ("within" if p["min_cosine"] >= usual.min_cosine
                   and p["top10_agreement"] >= usual.topk_agreement else "outside")
        print(f"{name:<15} parity on {p['images']}: min cosine {p['min_cosine']:.4f}, mean "
              f"{p['mean_cosine']:.4f}, top-10 agreement {p['top10_agreement']:.3f} "
              f"({verdict} tools/export.py's tolerance)", flush=True)
    for runtime in ("keras", "litert", "litert-float16", "litert-int8"):
        start = time.perf_counter()
        metrics = run_evaluation(args.model, args.data_root, overrides=["eval.rerank=false"],
                                 progress=False, runtime=runtime)
        rows[runtime] = metrics
        print(f"{runtime:<15} mAP {metrics['mAP']:.4f} rank-1 {metrics['rank1']:.4f} "
              f"mINP {metrics['mINP']:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    base = rows["keras"]["mAP"]
    for runtime, metrics in rows.items():
        print(f"{runtime:<15} mAP {metrics['mAP']:.4f}  change {metrics['mAP'] - base:+.4f} "
              f"({(metrics['mAP'] - base) / base * 100:+.1f}%)")


if __name__ == "__main__":
    main()
