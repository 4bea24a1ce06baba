"""Does a match threshold calibrated on a few held-out identities keep its false-match rate on
people never seen? Over several trainings of one small recipe.

    .venv/bin/python bench/calibration_transfer.py [--seeds 0 1 2] [--output runs/bench-calibration]

A small model (MobileNetV2 alpha 0.35 at 64x32, 4 epochs of 40 steps, ``neck_feat: centered``)
trains on one synthetic draw (100 identities of seed 11: 60 training, 40 test) and holds 20 of
its training identities out, on which it calibrates its thresholds (about 5,000 impostor
pairs). The threshold asked to let 1 impostor pair in 100 through is then checked on that
draw's 40 test identities and on a second draw's 40 (seed 12: other people, cameras and
pictures), once for each training seed.

Until issue 30, tests/test_calibration.py asserted this on one training: the observed rate
within 0.4x-2.5x of the asked one on both draws. It is a figure of a distribution of trainings
(it moved from 0.8x to 3.9x with the library's version and the epochs), so it is measured here,
over seeds, and the test checks what holds by construction.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid.utils.quiet import start_tensorflow_quietly  # noqa: E402

#: The recipe (the test's, before issue 30).
RECIPE = """
data: {dataset: market1501, height: 64, width: 32, ids_per_batch: 8, images_per_id: 4, pad: 2,
       erasing_prob: 0.0, val_ids: 20}
model: {alpha: 0.35, weights: null, last_stride: 2, neck_feat: centered}
loss: {triplet_distance: cosine}
train: {epochs: 4, steps_per_epoch: 40, lr: 3.0e-3, warmup_epochs: 1, schedule: cosine,
        export_litert: false}
"""
ASKED = 1e-2
#: (identities, test identities, seed) of the draw trained on, and of the other draw.
DRAWS = {"same draw": (100, 40, 11), "other draw": (41, 40, 12)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="train.seed of each training")
    parser.add_argument("--output", type=pathlib.Path, default=ROOT / "runs" / "bench-calibration")
    args = parser.parse_args()
    start_tensorflow_quietly()
    from reid.calibration import far_key, spec_calibration
    from reid.engine.commands import run_evaluation, run_training
    from reid.modeling.spec import read_spec
    from reid.synthetic.crops import generate_dataset

    data = {}
    for name, (ids, test_ids, seed) in DRAWS.items():
        data[name] = args.output / f"draw-seed{seed}"
        generate_dataset(data[name], ids=ids, test_ids=test_ids, cameras=3, images_per_id=8,
                         seed=seed, height=64, width=32)
    config = args.output / "recipe.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(RECIPE)
    rows = []
    print(f"threshold for a false-match rate of {ASKED:g}, calibrated on 20 held-out training "
          f"identities, observed on 40 unseen ones:")
    for seed in args.seeds:
        start = time.perf_counter()
        run = args.output / f"run-seed{seed}"
        result = run_training(config, run, [f"data.root={data['same draw']}",
                                            f"train.seed={seed}"],
                              resume=(run / "checkpoints").exists(), progress=False)
        calibration = spec_calibration(read_spec(result.model_dir), str(result.model_dir))
        row = {"seed": seed, "threshold": calibration.threshold(ASKED),
               "impostor_pairs": calibration.impostor_pairs}
        for name, root in data.items():
            metrics = run_evaluation(result.model_dir, root, progress=False)
            row[name] = metrics["calibrated"]["rates"][far_key(ASKED)]["far"]
        rows.append(row)
        print(f"  train.seed {seed}: threshold {row['threshold']:.4f} "
              f"({row['impostor_pairs']} validation impostor pairs); "
              + ", ".join(f"{name} {row[name]:.4f} ({row[name] / ASKED:.1f}x)" for name in DRAWS)
              + f"  [{time.perf_counter() - start:.0f} s]", flush=True)
    ratios = [row[name] / ASKED for row in rows for name in DRAWS]
    print(f"observed / asked over {len(rows)} trainings and {len(DRAWS)} draws: "
          f"{min(ratios):.1f}x to {max(ratios):.1f}x")
    (args.output / "calibration_transfer.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
