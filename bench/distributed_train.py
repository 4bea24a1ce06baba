"""One device against two multi_worker processes on this machine, the same global batch.

    .venv/bin/python bench/distributed_train.py [--config configs/synthetic.yaml]
                                                [--epochs 4] [--steps 75]

Trains the demo recipe (``make demo`` writes its synthetic data) three times, each with a
global batch of P x K images (the config's P) and the same seed:

* one device (``train.strategy: default``);
* two ``tools/train.py`` processes (``multi_worker``, ``TF_CONFIG`` on loopback ports), P/2
  identities each, batch norm per replica (the default);
* the same with ``train.sync_batchnorm: true``.

Prints, from each run's ``history.json``: images/s over the epochs after the first (which
traces the step), the last epoch's mean loss, and the validation mAP and rank-1 of the final
model; with the two-worker figures as ratios to one device's. On a 2-core CPU machine the two
workers share the cores one device had, so the ratio says what the exchange costs, not what
several machines or GPUs gain.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reid.utils.provenance import source_commit  # noqa: E402
from reid.utils.quiet import start_tensorflow_quietly  # noqa: E402


def train(folder: pathlib.Path, config: pathlib.Path, overrides: list[str],
          workers: int) -> tuple[dict, float]:
    """(the chief's history summary, wall seconds) of one run of ``workers`` processes."""
    from reid.engine.distribute import local_tf_configs

    command = [sys.executable, str(ROOT / "tools" / "train.py"), "--config", str(config),
               "--output", str(folder), "--no-progress", "--set", *overrides]
    environments = ([dict(os.environ, TF_CONFIG=c) for c in local_tf_configs(workers)]
                    if workers > 1 else [dict(os.environ)])
    logs = [(folder.parent / f"{folder.name}-{i}.log").open("w") for i in range(workers)]
    start = time.perf_counter()
    processes = [subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  cwd=ROOT) for env, log in zip(environments, logs)]
    codes = [process.wait() for process in processes]
    took = time.perf_counter() - start
    for log in logs:
        log.close()
    if any(codes):
        tail = (folder.parent / f"{folder.name}-0.log").read_text()[-2000:]
        raise SystemExit(f"error: {folder.name}: exit codes {codes}\n{tail}")
    history = json.loads((folder / "history.json").read_text())
    later = history[1:] or history
    return {"images_per_second": sum(h["images_per_second"] for h in later) / len(later),
            "loss": history[-1]["loss"], "mAP": history[-1]["val"]["mAP"],
            "rank1": history[-1]["val"]["rank1"]}, took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=pathlib.Path, default=ROOT / "configs" / "synthetic.yaml")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=75, help="steps per epoch")
    parser.add_argument("--runs", default="one,two,sync",
                        help="which runs, of one (one device), two (two workers) and sync (two "
                             "workers, synchronised batch norm)")
    args = parser.parse_args(argv)
    start_tensorflow_quietly()
    from reid.config import load_config

    cfg = load_config(args.config)
    p, k = cfg.data.ids_per_batch, cfg.data.images_per_id
    if p % 2:
        print(f"error: {args.config}: data.ids_per_batch {p} is odd; two workers need P/2 each",
              file=sys.stderr)
        return 1
    common = [f"train.epochs={args.epochs}", f"train.steps_per_epoch={args.steps}",
              "train.export_litert=false", "train.eval_every=0"]
    runs = {"one": ("one device", 1, []),
            "two": ("two workers", 2, ["train.strategy=multi_worker",
                                       f"data.ids_per_batch={p // 2}"]),
            "sync": ("two workers, synchronised BN", 2,
                     ["train.strategy=multi_worker", f"data.ids_per_batch={p // 2}",
                      "train.sync_batchnorm=true"])}
    chosen = args.runs.split(",")
    if "one" not in chosen or not set(chosen) <= set(runs):
        print(f"error: --runs {args.runs}: expected one, and any of two and sync",
              file=sys.stderr)
        return 1
    print(f"code {source_commit(ROOT)}; {platform.machine()}, {os.cpu_count()} cores; "
          f"{args.config.name}, global batch {p} x {k} = {p * k} images, "
          f"{args.epochs} epochs x {args.steps} steps")
    results = {}
    with tempfile.TemporaryDirectory(prefix="reid-distributed-") as tmp:
        for name, workers, overrides in (runs[key] for key in chosen):
            folder = pathlib.Path(tmp) / name.replace(" ", "-").replace(",", "")
            results[name], took = train(folder, args.config, common + overrides, workers)
            r = results[name]
            print(f"{name:30s} {r['images_per_second']:7.1f} images/s  loss {r['loss']:.4f}  "
                  f"mAP {r['mAP']:.4f}  rank-1 {r['rank1']:.4f}  ({took:.0f} s in all)",
                  flush=True)
    base = results["one device"]
    for name in (n for n in results if n != "one device"):
        r = results[name]
        print(f"{name}: {r['images_per_second'] / base['images_per_second']:.2f}x the images/s "
              f"of one device, mAP {r['mAP'] - base['mAP']:+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
