"""Training past one device: two real multi_worker processes on this machine's CPU.

Each run starts two ``tools/train.py`` processes with ``TF_CONFIG`` naming both on 127.0.0.1
ports; they train a tiny model for a few steps on synthetic data. A run is bounded in time:
whatever is still running after ``WORKER_SECONDS`` is killed by its process id.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from reid.config import ConfigError, config_from_dict, load_config, save_config
from reid.data import load_dataset
from reid.data.records import DatasetError, ImageRecord, make_dataset
from reid.engine.checkpoint import latest_checkpoint
from reid.engine.distribute import check_tf_config, local_replicas, local_tf_configs
from reid.engine.schedule import learning_rate_at
from reid.engine.trainer import Trainer, TrainingError, training_dataset
from reid.index.query import load_query_image
from reid.modeling import Embedder
from reid.run_layout import RunLayout

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER_SECONDS = 300
FINGERPRINT = re.compile(r"trained weights ([0-9a-f]{16}) after epoch (\d+)")

#: A tiny run: alpha 0.35 at 64x32, P=2 identities x K=2 images on each of two replicas.
TINY = {
    "data": {"height": 64, "width": 32, "ids_per_batch": 2, "images_per_id": 2, "pad": 2},
    "model": {"alpha": 0.35, "weights": None},
    "train": {"epochs": 2, "steps_per_epoch": 3, "warmup_epochs": 1, "lr": 1e-3, "seed": 3,
              "export_litert": False, "strategy": "multi_worker"},
    "eval": {"batch_size": 32},
}


def write_config(folder: pathlib.Path, data: pathlib.Path, **sections) -> pathlib.Path:
    raw = {name: dict(values) for name, values in TINY.items()}
    raw["data"]["root"] = str(data)
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path = folder / "tiny.json"  # JSON is YAML
    path.write_text(json.dumps(raw))
    return path


def run_two_workers(args: list[str], folder: pathlib.Path) -> list[tuple[int, str]]:
    """(exit code, output) of worker 0 (the chief) and worker 1 of one ``tools/train.py``
    run. Output goes to files, so neither worker can block on a full pipe."""
    processes, logs = [], []
    for index, tf_config in enumerate(local_tf_configs(2)):
        env = dict(os.environ, TF_CONFIG=tf_config)
        log = (folder / f"worker-{index}-{time.monotonic_ns()}.log").open("w+")
        logs.append(log)
        processes.append(subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "train.py"), *args, "--no-progress"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder))
    deadline = time.monotonic() + WORKER_SECONDS
    try:
        for process in processes:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    results = []
    for process, log in zip(processes, logs):
        log.seek(0)
        results.append((process.returncode, log.read()))
        log.close()
    return results


def fingerprints(results: list[tuple[int, str]]) -> list[tuple[str, str]]:
    for code, output in results:
        assert code == 0, output[-3000:]
    return [FINGERPRINT.findall(output)[-1] for _, output in results]


@pytest.fixture(scope="module")
def data(tiny_data) -> pathlib.Path:
    """tests/conftest.py's drawn pedestrians: 10 training identities, 10 test."""
    return tiny_data


#: Synchronised batch norm and losses that are means over the batch (cross-entropy and
#: center; no triplet, whose hardest negatives depend on the batch it searches): two replicas
#: of P x K compute what one device computes on 2P x K. A small learning rate: Adam's first
#: steps have about the learning rate's size whatever the gradient's, so at 1e-3 rounding
#: noise in near-zero gradients alone moved the loss by 1e-3 in 3 steps.
LIKE_ONE_DEVICE = {"loss": {"triplet_weight": 0.0, "center_weight": 0.01},
                   "train": {"sync_batchnorm": True, "lr": 1e-4}}


@dataclasses.dataclass
class TwoWorkerRun:
    run: pathlib.Path
    #: (exit code, output) of the chief and of worker 1.
    results: list[tuple[int, str]]
    #: The first epoch's record, and the second epoch on one device from the same checkpoint.
    first_epoch: dict
    one_device_second_epoch: dict


@pytest.fixture(scope="module")
def two_workers(data, tmp_path_factory) -> TwoWorkerRun:
    """A two-worker run stopped after its first epoch and resumed by two workers for its
    second; beside it, the same second epoch on one device from the same checkpoint.

    The first epoch is trained on one device with 2P identities a step: the same global batch,
    image for image (test_pipeline.py), as two replicas of P. Its checkpoint, labelled as
    written on two replicas, starts the two-worker run. One launch of two workers instead of
    two keeps the suite within its time.
    """
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("two-workers")
    config = write_config(folder, data, **LIKE_ONE_DEVICE)
    raw = json.loads(config.read_text())
    raw["data"]["ids_per_batch"] = 4
    raw["train"]["strategy"] = "default"
    one_cfg = config_from_dict(raw, name="one-device")
    one = Trainer(one_cfg, training_dataset(load_dataset(one_cfg.data), one_cfg),
                  folder / "one", progress=False, log=lambda _: None)
    writer = tf.summary.create_noop_writer()
    one.history.append({"epoch": 1, **one.train_epoch(writer)})
    one.save()
    run = RunLayout(folder / "run")
    shutil.copytree(one.layout.checkpoints, run.checkpoints)
    state_file = latest_checkpoint(run.checkpoints) / "state.json"
    state_file.write_text(json.dumps({**json.loads(state_file.read_text()), "replicas": 2}))
    save_config(load_config(config), run.config)
    results = run_two_workers(["--resume", "--output", "run"], folder)
    return TwoWorkerRun(run.root, results, one.history[0], one.train_epoch(writer))


def test_both_workers_end_with_the_same_weights_and_only_the_chief_writes(two_workers, data):
    (chief, after), (other, other_after) = fingerprints(two_workers.results)
    assert chief == other and after == other_after == "2"
    chief_output, other_output = (output for _, output in two_workers.results)
    assert "exported embedding model" in chief_output
    assert "exported embedding model" not in other_output
    assert "[worker 1]" in other_output and "[worker" not in chief_output
    embedder = Embedder.load(two_workers.run / "model")
    height, width = embedder.input_size
    images = [load_query_image(str(p), height, width)
              for p in sorted((data / "query").glob("*.jpg"))[:4]]
    vectors = embedder.embed(np.stack(images))
    assert vectors.shape[0] == 4 and np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_two_worker_run_resumes_where_it_stopped(two_workers):
    fingerprints(two_workers.results)
    assert all("resumed" in output and "after epoch 1" in output
               for _, output in two_workers.results)
    state = json.loads((latest_checkpoint(two_workers.run / "checkpoints")
                        / "state.json").read_text())
    assert state["epoch"] == 2 and state["replicas"] == 2
    history = json.loads((two_workers.run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0] == pytest.approx(two_workers.first_epoch)
    # The schedule went on from the optimizer's restored step count (6 steps: past the
    # one-epoch warm-up), not from 0. Exact resume is tested on one device (test_train.py).
    cfg = load_config(two_workers.run / "config.yaml")
    assert history[1]["lr"] == pytest.approx(learning_rate_at(5 / 3, cfg.train), rel=1e-6)
    assert history[1]["lr"] != pytest.approx(learning_rate_at(2 / 3, cfg.train), rel=1e-3)


def test_two_workers_learn_as_one_device_does_on_the_same_global_batch(two_workers):
    fingerprints(two_workers.results)
    two = json.loads((two_workers.run / "history.json").read_text())[1]
    one = two_workers.one_device_second_epoch
    # The same weights and optimizer state to start from, the same batches: the mean over 3
    # steps, each after the updates of the one before, differs only in the order of
    # floating-point sums (measured: 4e-6).
    for term in ("loss", "ce", "center"):
        assert two[term] == pytest.approx(one[term], rel=1e-4), term


def test_batch_norm_statistics_on_two_replicas_against_numpy():
    """Two mirrored CPU replicas in one process, a batch norm fed a different batch on each."""
    import two_cpu_replicas as replicas

    result = subprocess.run([sys.executable, str(ROOT / "tests" / "two_cpu_replicas.py")],
                            capture_output=True, text=True, timeout=WORKER_SECONDS)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    m = replicas.MOMENTUM
    own = [((1 - m) * b.mean(0), m + (1 - m) * b.var(0)) for b in replicas.BATCHES]
    whole = np.concatenate(replicas.BATCHES)
    expected = {
        # Each replica keeps the statistics of its own batch: the copies part.
        "own": [[own[0][0], own[1][0]], [own[0][1], own[1][1]]],
        # Averaged after the step: every copy holds the mean of the replicas' statistics.
        "averaged": [[(own[0][0] + own[1][0]) / 2] * 2, [(own[0][1] + own[1][1]) / 2] * 2],
        # Synchronised: the statistics of the global batch, on every copy.
        "synchronized": [[(1 - m) * whole.mean(0)] * 2, [m + (1 - m) * whole.var(0)] * 2],
    }
    for mode, (means, variances) in expected.items():
        np.testing.assert_allclose(report[mode][0], means, rtol=1e-5, err_msg=mode)
        np.testing.assert_allclose(report[mode][1], variances, rtol=1e-5, err_msg=mode)


def test_resume_on_another_number_of_replicas_is_refused(data, tmp_path):
    raw = {name: dict(values) for name, values in TINY.items()}
    raw["data"]["root"] = str(data)
    raw["train"].update(strategy="default", epochs=1)
    cfg = config_from_dict(raw, name="tiny")
    dataset = training_dataset(load_dataset(cfg.data), cfg)
    trainer = Trainer(cfg, dataset, tmp_path / "run", progress=False, log=lambda _: None)
    trainer.save()  # as a run on two replicas would have saved it, but for the count
    state_file = latest_checkpoint(tmp_path / "run" / "checkpoints") / "state.json"
    state = json.loads(state_file.read_text())
    assert state["replicas"] == 1
    state_file.write_text(json.dumps({**state, "replicas": 2}))
    with pytest.raises(TrainingError, match="on 2 replica\\(s\\), this one has 1"):
        trainer.restore()


def test_a_step_needs_p_identities_for_every_replica(tmp_path):
    from reid.engine.trainer import check_dataset_fills_pk_batches

    records = [ImageRecord(f"/nowhere/{pid}_{i}.jpg", pid, 1) for pid in range(6)
               for i in range(4)]
    dataset = make_dataset("six", str(tmp_path), records, [], [])
    cfg = config_from_dict({"data": {"ids_per_batch": 4}}, name="p4")
    check_dataset_fills_pk_batches(dataset, cfg, replicas=1)
    with pytest.raises(DatasetError, match="ids_per_batch is 4 on each of 2 replicas \\(8 a "
                                           "step\\) but the training split has only 6"):
        check_dataset_fills_pk_batches(dataset, cfg, replicas=2)


@pytest.mark.parametrize("text, message", [
    (None, "TF_CONFIG environment variable is not set"),
    ("{not json", "TF_CONFIG: expected JSON"),
    ('{"cluster": {"worker": ["a:1"]}}', "TF_CONFIG: expected JSON"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     "task worker 2 is not in the cluster"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}',
     "task ps 0 is not in the cluster"),
    # A string where the list belongs (TensorFlow raised a TypeError traceback), an address
    # without a port (an InvalidArgumentError traceback), and ports that cannot be.
    ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}',
     'TF_CONFIG: cluster.worker: expected a list of host:port addresses, got "a:1"'),
    ('{"cluster": {"worker": ["a:1", "b"]}, "task": {"type": "worker", "index": 0}}',
     'TF_CONFIG: cluster.worker: "b" is not host:port'),
    ('{"cluster": {"worker": ["a:1", "b:0"]}, "task": {"type": "worker", "index": 0}}',
     '"b:0" is not host:port'),
    ('{"cluster": {"worker": ["a:1", "b:65536"]}, "task": {"type": "worker", "index": 0}}',
     '"b:65536" is not host:port'),
    ('{"cluster": {"worker": ["a:1", 2]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG: cluster.worker: 2 is not host:port"),
    ('{"cluster": {"chief": "c:1", "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG: cluster.chief: expected a list"),
])
def test_a_bad_tf_config_is_named(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_tf_config(text)


def test_tf_config_gives_this_workers_place():
    configs = local_tf_configs(3)
    assert [check_tf_config(c) for c in configs] == [(0, 3), (1, 3), (2, 3)]
    addresses = json.loads(configs[0])["cluster"]["worker"]
    assert len(set(addresses)) == 3 and all(a.startswith("127.0.0.1:") for a in addresses)
    two = {"worker": ["a:1", "b:2"]}
    assert check_tf_config(json.dumps({"cluster": two, "task": {"type": "worker",
                                                                "index": 1}})) == (1, 2)
    with_chief = {"chief": ["c:3"], **two}
    assert check_tf_config(json.dumps({"cluster": with_chief, "task": {"type": "chief",
                                                                       "index": 0}})) == (0, 3)
    assert check_tf_config(json.dumps({"cluster": with_chief, "task": {"type": "worker",
                                                                       "index": 0}})) == (1, 3)


def test_each_input_pipeline_serves_its_own_replicas():
    import tensorflow as tf

    def served(pipeline: int, pipelines: int, replicas: int) -> range:
        return local_replicas(tf.distribute.InputContext(
            num_input_pipelines=pipelines, input_pipeline_id=pipeline,
            num_replicas_in_sync=replicas))

    assert served(0, 1, 1) == range(0, 1)
    assert served(0, 1, 4) == range(0, 4)  # mirrored: one pipeline, every local replica
    assert [served(i, 2, 4) for i in range(2)] == [range(0, 2), range(2, 4)]
    assert [served(i, 3, 3) for i in range(3)] == [range(0, 1), range(1, 2), range(2, 3)]


def test_an_unknown_strategy_is_refused():
    with pytest.raises(ConfigError, match="train.strategy"):
        config_from_dict({"train": {"strategy": "horovod"}}, name="bad")
