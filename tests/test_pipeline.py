"""tf.data pipelines: training batches, ordered evaluation, single images, bad files."""

from __future__ import annotations

import dataclasses
import pathlib
import warnings
from collections import Counter

import cv2
import numpy as np
import pytest

from reid.config import DataConfig
from reid.data.pipeline import (
    BadImageError,
    TrainInput,
    check_images,
    eval_dataset,
    load_image,
)
from reid.data.preprocessing import normalize_pixels
from reid.data.records import ImageRecord

H, W = 24, 12


def _flat_png(path: pathlib.Path, index: int, size: tuple[int, int] = (20, 10)) -> str:
    """A lossless single-colour image whose colour encodes ``index`` (0..~1000)."""
    img = np.empty((*size, 3), np.uint8)
    img[..., 0] = index % 256  # cv2 writes BGR; decoded RGB has these reversed
    img[..., 1] = index // 256
    img[..., 2] = 77
    cv2.imwrite(str(path), img)
    return str(path)


def _index_of(normalised: np.ndarray) -> int:
    """Invert _flat_png from a normalised RGB image (constant colour survives resizing)."""
    rgb = np.rint((normalised + 1.0) * 127.5).reshape(-1, 3)
    assert np.all(rgb == rgb[0]), "image is not a flat colour"
    assert rgb[0, 0] == 77
    return int(rgb[0, 2] + 256 * rgb[0, 1])


def _records(tmp_path: pathlib.Path, counts: dict[int, int]) -> list[ImageRecord]:
    records = []
    for pid, n in counts.items():
        for _ in range(n):
            i = len(records)
            # Alternate sizes so resizing really happens (enlarging and shrinking).
            size = (20, 10) if i % 2 else (40, 30)
            records.append(ImageRecord(_flat_png(tmp_path / f"{i:04d}.png", i, size), pid, 0))
    return records


def _config(**kw) -> DataConfig:
    base = dict(height=H, width=W, ids_per_batch=3, images_per_id=2, seed=4, flip_prob=0.0,
                pad=0, erasing_prob=0.0, color_jitter=0.0)
    base.update(kw)
    return dataclasses.replace(DataConfig(), **base)


def _triangle_weights(n_in: int, n_out: int) -> np.ndarray:
    """Half-pixel-centred linear interpolation, kernel widened by the shrink factor (PIL style)."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centers = (np.arange(n_out) + 0.5) * scale
    taps = np.arange(n_in) + 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(taps[None, :] - centers[:, None]) / support)
    return weights / weights.sum(axis=1, keepdims=True)


def _reference(path: str, height: int, width: int) -> np.ndarray:
    """NumPy/OpenCV resize + MobileNetV2 normalisation, independent of TensorFlow."""
    rgb = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float64)
    rows, cols = _triangle_weights(rgb.shape[0], height), _triangle_weights(rgb.shape[1], width)
    resized = np.einsum("ij,jkc,lk->ilc", rows, rgb, cols)
    return (resized / 127.5 - 1.0).astype(np.float32)


def test_train_batches_are_pk_and_follow_the_sampler(tmp_path: pathlib.Path) -> None:
    counts = {0: 3, 1: 2, 2: 5, 3: 4, 4: 1}
    records = _records(tmp_path, counts)
    config = _config()
    train = TrainInput(records, config)
    labels = np.array([r.pid for r in records])
    expected = train.sampler.epoch_batches(2)
    batches = list(train.epoch(2).as_numpy_iterator())
    assert len(batches) == train.batches_per_epoch == expected.shape[0]
    for (images, batch_labels), indices in zip(batches, expected):
        assert images.shape == (6, H, W, 3) and images.dtype == np.float32
        assert batch_labels.shape == (6,) and batch_labels.dtype == np.int32
        counter = Counter(batch_labels.tolist())
        assert len(counter) == 3 and set(counter.values()) == {2}
        # Every image is the record the sampler chose, and carries that record's label.
        shown = [_index_of(img) for img in images]
        assert shown == indices.tolist()
        np.testing.assert_array_equal(batch_labels, labels[shown])


def test_replicas_split_the_one_device_batch_by_whole_identities(tmp_path: pathlib.Path) -> None:
    """Two replicas of P x K: together, image for image and augmentation for augmentation, the
    batch one device sees with 2P identities; apart, P whole identities each, none shared."""
    records = _records(tmp_path, {pid: 3 + pid % 3 for pid in range(9)})
    config = _config(flip_prob=0.5, pad=3, erasing_prob=0.5, color_jitter=0.2)
    one_device = TrainInput(records, _config(ids_per_batch=6, flip_prob=0.5, pad=3,
                                             erasing_prob=0.5, color_jitter=0.2), check=False)
    replicas = TrainInput(records, config, check=False, replicas=2)
    assert replicas.batch_size == 6 and replicas.global_batch_size == 12
    assert replicas.batches_per_epoch == one_device.batches_per_epoch
    whole = list(one_device.epoch(1).as_numpy_iterator())
    first = list(replicas.epoch(1, range(0, 1)).as_numpy_iterator())
    second = list(replicas.epoch(1, range(1, 2)).as_numpy_iterator())
    both = list(replicas.epoch(1).as_numpy_iterator())  # one pipeline for both, step by step
    assert len(first) == len(second) == len(whole) and len(both) == 2 * len(whole)
    for step, ((images, labels), (a, la), (b, lb)) in enumerate(zip(whole, first, second)):
        np.testing.assert_array_equal(np.concatenate([a, b]), images)
        np.testing.assert_array_equal(np.concatenate([la, lb]), labels)
        np.testing.assert_array_equal(both[2 * step][0], a)
        np.testing.assert_array_equal(both[2 * step + 1][0], b)
        for part in (la, lb):
            counter = Counter(part.tolist())
            assert len(counter) == 3 and set(counter.values()) == {2}
        assert not set(la.tolist()) & set(lb.tolist())
    with pytest.raises(ValueError, match="replicas range\\(1, 3\\)"):
        replicas.epoch(1, range(1, 3))


def test_train_epoch_is_reproducible_and_augmented(tmp_path: pathlib.Path) -> None:
    records = _records(tmp_path, {0: 4, 1: 4, 2: 4, 3: 4})
    config = _config(flip_prob=0.5, pad=3, erasing_prob=0.5, color_jitter=0.2)
    first = list(TrainInput(records, config, check=False).epoch(1).as_numpy_iterator())
    # A second TrainInput, as a resumed run builds: the same epoch must come out the same.
    again_input = TrainInput(records, config, check=False)
    again = list(again_input.epoch(1).as_numpy_iterator())
    other = list(again_input.epoch(2).as_numpy_iterator())
    for (a, la), (b, lb) in zip(first, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    assert not all(np.array_equal(a, b) for (a, _), (b, _) in zip(first, other))
    for images, _ in first:
        assert images.min() >= -1.0 and images.max() <= 1.0
    # Padding shows up as black (-1) borders on some flat-colour images.
    assert any((img == -1.0).all(axis=-1).any() for images, _ in first for img in images)


def test_eval_preserves_order_in_uneven_batches(tmp_path: pathlib.Path) -> None:
    paths = [_flat_png(tmp_path / f"e{i}.png", i, (30 + 7 * (i % 3), 15)) for i in range(11)]
    batches = list(eval_dataset(paths, H, W, batch_size=4).as_numpy_iterator())
    assert [b.shape[0] for b in batches] == [4, 4, 3]
    images = np.concatenate(batches)
    assert images.dtype == np.float32 and images.shape == (11, H, W, 3)
    assert [_index_of(normalize_pixels(img)) for img in images] == list(range(11))


@pytest.mark.parametrize("size", [(10, 7), (40, 20), (97, 31)])  # enlarge, same ratio, shrink
def test_eval_matches_numpy_reference(tmp_path: pathlib.Path, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(size[0])
    img = cv2.GaussianBlur(rng.integers(0, 256, (*size, 3), dtype=np.uint8), (3, 3), 1)
    path = str(tmp_path / "tex.png")
    cv2.imwrite(path, img)
    (batch,) = list(eval_dataset([path], H, W, batch_size=8).as_numpy_iterator())
    assert batch.min() >= 0.0 and batch.max() <= 255.0  # pixels: the embedder normalises
    np.testing.assert_allclose(normalize_pixels(batch[0]), _reference(path, H, W), atol=2e-4)
    if size[0] < H:  # enlarging is plain bilinear: OpenCV agrees too
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32)
        cv = cv2.resize(rgb, (W, H), interpolation=cv2.INTER_LINEAR) / 127.5 - 1.0
        np.testing.assert_allclose(normalize_pixels(batch[0]), cv, atol=2e-4)
    # The single-image loader is the same pipeline.
    np.testing.assert_allclose(load_image(path, H, W), batch[0], atol=1e-6)


def test_eval_flip_mirrors(tmp_path: pathlib.Path) -> None:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"f{i}.png"))
        cv2.imwrite(paths[-1], rng.integers(0, 256, (30, 14, 3), dtype=np.uint8))
    plain = np.concatenate(list(eval_dataset(paths, H, W, 2).as_numpy_iterator()))
    mirrored = np.concatenate(list(eval_dataset(paths, H, W, 2, flip=True).as_numpy_iterator()))
    np.testing.assert_array_equal(mirrored, plain[:, :, ::-1])
    assert not np.array_equal(mirrored, plain)


def test_grey_and_alpha_images_load_as_rgb(tmp_path: pathlib.Path) -> None:
    grey = str(tmp_path / "g.png")
    cv2.imwrite(grey, np.full((20, 10), 200, np.uint8))
    rgba = str(tmp_path / "a.png")
    alpha = np.full((20, 10), 9, np.uint8)
    cv2.imwrite(rgba, np.dstack([np.full((20, 10, 3), 50, np.uint8), alpha]))
    np.testing.assert_allclose(normalize_pixels(load_image(grey, H, W)), 200 / 127.5 - 1,
                               atol=1e-6)
    np.testing.assert_allclose(normalize_pixels(load_image(rgba, H, W)), 50 / 127.5 - 1,
                               atol=1e-6)


def _corrupt(tmp_path: pathlib.Path) -> str:
    bad = tmp_path / "broken_0007.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg " * 20)
    return str(bad)


def test_corrupt_image_stops_with_its_name(tmp_path: pathlib.Path) -> None:
    good = [_flat_png(tmp_path / f"ok{i}.png", i) for i in range(5)]
    bad = _corrupt(tmp_path)
    with pytest.raises(BadImageError) as info:
        check_images(good[:2] + [bad] + good[2:], skip_bad=False)
    message = str(info.value)
    assert bad in message and "\n" not in message
    assert isinstance(info.value, ValueError)
    with pytest.raises(BadImageError, match="broken_0007.jpg"):
        load_image(bad, H, W)
    with pytest.raises(BadImageError, match="missing.png"):
        load_image(str(tmp_path / "missing.png"), H, W)


def test_skip_bad_drops_with_warning_naming_each(tmp_path: pathlib.Path) -> None:
    good = [_flat_png(tmp_path / f"ok{i}.png", i) for i in range(5)]
    bad = _corrupt(tmp_path)
    missing = str(tmp_path / "gone.jpg")
    truncated = tmp_path / "cut.jpg"
    ok, data = cv2.imencode(".jpg", np.full((40, 20, 3), 128, np.uint8))
    truncated.write_bytes(data.tobytes()[: len(data) // 2])
    paths = [good[0], bad, good[1], missing, str(truncated)] + good[2:]
    with pytest.warns(UserWarning) as record:
        kept = check_images(paths, skip_bad=True)
    assert kept == good
    (warning,) = [w for w in record if "skipped" in str(w.message)]
    for name in (bad, missing, str(truncated)):
        assert name in str(warning.message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_images(good, skip_bad=True) == good  # no warning when all are fine


def test_train_input_checks_records(tmp_path: pathlib.Path) -> None:
    records = _records(tmp_path, {0: 3, 1: 3, 2: 3})
    bad = ImageRecord(_corrupt(tmp_path), 1, 0)
    with pytest.raises(BadImageError, match="broken_0007.jpg"):
        TrainInput(records + [bad], _config())
    with pytest.warns(UserWarning, match="broken_0007.jpg"):
        train = TrainInput(records + [bad], _config(skip_bad_images=True))
    assert train.records == tuple(records)
