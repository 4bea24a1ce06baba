"""Config loading: every mistake is caught before anything runs, and named by file and key."""

import dataclasses
import pathlib
import subprocess
import sys

import pytest

from reid.config import (Config, ConfigError, config_from_dict, config_reference, load_config,
                         parse_override, save_config)

CONFIGS = sorted((pathlib.Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def write(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_configs_load():
    names = {p.stem for p in CONFIGS}
    assert {"synthetic", "market1501", "cuhk03"} <= names
    for path in CONFIGS:
        cfg = load_config(path)
        assert cfg.name == path.stem
    assert load_config(CONFIGS[0].parent / "market1501.yaml").model.weights == "imagenet"
    synthetic = load_config(CONFIGS[0].parent / "synthetic.yaml")
    # The demo draws its crops at 128x64; training must not ask for more than is there.
    assert synthetic.data.height <= 128 and synthetic.data.width <= 64
    assert synthetic.model.weights is None  # the demo downloads nothing


def test_values_from_file_and_defaults(tmp_path):
    path = write(tmp_path, "train:\n  epochs: 7\nmodel:\n  weights: null\n  alpha: 0.5\n")
    cfg = load_config(path)
    assert cfg.train.epochs == 7
    assert cfg.model.weights is None
    assert cfg.model.alpha == 0.5
    assert cfg.train.lr == Config().train.lr  # untouched keys keep their defaults
    assert cfg.batch_size == cfg.data.ids_per_batch * cfg.data.images_per_id


def test_int_accepted_for_float(tmp_path):
    cfg = load_config(write(tmp_path, "train:\n  lr: 1\n"))
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ("train:\n  epoch: 3\n", "train.epoch", "unknown key"),
        ("trian:\n  epochs: 3\n", "trian", "unknown section"),
        ("train:\n  epochs: three\n", "train.epochs", "expected int"),
        ("train:\n  epochs: 2.5\n", "train.epochs", "expected int"),
        ("data:\n  skip_bad_images: 1\n", "data.skip_bad_images", "expected bool"),
        ("data:\n  height: 8\n", "data.height", ">= 32"),
        ("data:\n  flip_prob: 1.5\n", "data.flip_prob", "<= 1.0"),
        ("model:\n  pooling: max\n", "model.pooling", "one of avg, gem"),
        ("data:\n  erasing_area: [0.1]\n", "data.erasing_area", "list of 2"),
        ("data:\n  erasing_area: [0.5, 0.1]\n", "data.erasing_area", "min <= max"),
        ("train:\n  lr_steps: 40\n", "train.lr_steps", "list of int"),
        ("model: 3\n", "model", "expected a mapping"),
        ("- a\n- b\n", "", "mapping of sections"),
    ],
)
def test_errors_name_file_and_key(tmp_path, text, key, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert key in message
    assert expected in message
    assert "\n" not in message


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = write(tmp_path, "train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(bad)
    assert "\n" not in str(info.value)


def test_overrides_parse_as_yaml_scalars(tmp_path):
    path = write(tmp_path, "train:\n  epochs: 7\n")
    cfg = load_config(path, ["train.epochs=3", "model.alpha=0.5", "model.weights=null",
                             "data.root=/some where", "train.lr_steps=[5, 9]", "eval.rerank=true"])
    assert cfg.train.epochs == 3
    assert cfg.model.alpha == 0.5
    assert cfg.model.weights is None
    assert cfg.data.root == "/some where"
    assert cfg.train.lr_steps == [5, 9]
    assert cfg.eval.rerank is True
    assert parse_override("train.lr=1e-3") == (["train", "lr"], 1e-3)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.epochs", "expected section.key=value"),
        ("epochs=3", "expected section.key=value"),
        ("train.epochs=-1", "train.epochs: expected a value >= 1"),
        ("train.nope=1", "train.nope: unknown key"),
        ("nope.epochs=1", "nope: unknown section"),
    ],
)
def test_bad_overrides_name_the_override(tmp_path, override, expected):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, ""), [override])
    assert override in str(info.value)
    assert expected in str(info.value)


def test_saved_config_round_trips(tmp_path):
    cfg = config_from_dict({"train": {"epochs": 4}, "model": {"weights": None}}, name="x",
                           overrides=["data.height=64"])
    out = tmp_path / "run" / "config.yaml"
    save_config(cfg, out)
    again = load_config(out)
    assert dataclasses.asdict(again) | {"name": "x"} == dataclasses.asdict(cfg)
    assert list(out.parent.iterdir()) == [out]  # no temporary file left behind


def test_a_validated_config_cannot_be_changed_only_copied():
    cfg = config_from_dict({}, overrides=["eval.rerank=false"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.eval.rerank = True  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.eval = dataclasses.replace(cfg.eval, rerank=True)  # type: ignore[misc]
    copy = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, rerank=True))
    assert copy.eval.rerank is True and cfg.eval.rerank is False


def test_reference_lists_every_key():
    reference = config_reference()
    for section, values in Config().to_dict().items():
        for key in values:
            assert f"`{section}.{key}`" in reference
    # One row per key plus the header rows.
    n_keys = sum(len(v) for v in Config().to_dict().values())
    assert len(reference.splitlines()) == n_keys + 2


@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("3.5e-4", 3.5e-4), ("2E-1", 0.2),
                                         ("7", 7.0), (".5", 0.5)])
def test_float_spellings(tmp_path, text, value):
    """PyYAML alone reads 1e-3 as a string; a learning rate written that way must still load."""
    cfg = load_config(write(tmp_path, f"train:\n  lr: {text}\n"), [f"loss.center_lr={text}"])
    assert cfg.train.lr == pytest.approx(value)
    assert cfg.loss.center_lr == pytest.approx(value)


def test_docs_config_reference_is_current():
    from reid.cli.reference import config_reference_document

    docs = pathlib.Path(__file__).resolve().parents[1] / "docs" / "CONFIG.md"
    assert docs.read_text() == config_reference_document(), (
        "docs/CONFIG.md is stale: run python tools/config_reference.py --write")


def test_choices_are_what_the_implementations_offer():
    """Every choice the config accepts reaches an implementation that runs it (the miners and
    loss distances: tests/test_losses.py runs each of reid.choices' lists)."""
    import numpy as np

    from reid.data import READERS
    from reid.evaluation import pairwise_distance

    def choices(section, key):
        return {f.name: f for f in dataclasses.fields(section)}[key].metadata["choices"]

    cfg = Config()
    assert set(choices(type(cfg.data), "dataset")) == set(READERS)
    for metric in choices(type(cfg.eval), "distance"):
        assert pairwise_distance(np.eye(2), np.eye(2), metric)[0, 1] > 0.5
    assert set(choices(type(cfg.index), "type")) == {"flat", "hnsw", "ivfpq"}  # test_index's


def test_importing_the_config_loads_neither_tensorflow_nor_faiss():
    code = "import sys, reid.config; print('tensorflow' in sys.modules, 'faiss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_removed_key_still_loads_from_an_old_run_folder_at_its_old_default(tmp_path):
    """Run folders saved before model.rescale_kernels was removed hold it as false."""
    old = write(tmp_path, "model:\n  alpha: 0.5\n  rescale_kernels: false\n", "config.yaml")
    cfg = load_config(old)
    assert cfg.model.alpha == 0.5 and "rescale_kernels" not in cfg.to_dict()["model"]
    with pytest.raises(ConfigError, match=r"model.rescale_kernels: this key was removed; only "
                                          r"false"):
        load_config(old, ["model.rescale_kernels=true"])


def test_a_saved_run_config_without_a_later_key_reads_as_it_was_trained(tmp_path):
    from reid.config import load_saved_config

    saved = tmp_path / "config.yaml"
    saved.write_text("data:\n  root: data/x\ntrain:\n  epochs: 3\n")
    # A run saved before data.val_ids existed validated on the test split.
    assert load_saved_config(saved).data.val_ids == 0
    assert load_saved_config(saved, ["data.val_ids=5"]).data.val_ids == 5
    assert load_config(saved).data.val_ids == 0.1  # a config a user writes gets the default
    saved.write_text("data:\n  val_ids: 7\n")
    assert load_saved_config(saved).data.val_ids == 7
