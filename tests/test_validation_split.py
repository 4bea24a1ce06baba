"""hold_out_identities: the validation split keeps the camera rule, whole identities, seeds."""

from __future__ import annotations

import pytest

from reid.data.records import DatasetError, ImageRecord
from reid.data.validation import held_out_count, hold_out_identities


def records(layout: dict[int, list[int]]) -> list[ImageRecord]:
    """{pid: [camera of each image]} -> records."""
    return [ImageRecord(f"/d/{pid:04d}_c{cam}_{i}.jpg", pid, cam)
            for pid, cams in layout.items() for i, cam in enumerate(cams)]


LAYOUT = {1: [1, 1, 2, 2], 2: [1, 2], 3: [1, 1, 1], 4: [1, 2, 3, 3], 5: [2, 3], 6: [1, 2, 2]}


def test_every_query_keeps_a_match_from_another_camera():
    train = records(LAYOUT)
    for seed in range(20):
        kept, query, gallery = hold_out_identities(train, 3, seed)
        held = {r.pid for r in query + gallery}
        assert len(held) == 3 and 3 not in held  # pid 3 has one camera: never held out
        assert {r.pid for r in kept} == set(LAYOUT) - held  # whole identities move
        assert sorted(kept + query + gallery, key=lambda r: r.path) == sorted(
            train, key=lambda r: r.path)  # nothing lost or repeated
        for q in query:  # the Market camera rule, checked pair by pair
            assert any(g.pid == q.pid and g.camid != q.camid for g in gallery)
        for pid in held:  # at least one query per held-out identity
            assert any(q.pid == pid for q in query)


def test_two_images_from_two_cameras_give_one_query():
    _, query, gallery = hold_out_identities(records({2: [1, 2], 7: [1, 1], 8: [2, 2]}), 1,
                                            seed=0)
    assert len(query) == 1 and len(gallery) == 1 and query[0].camid != gallery[0].camid


def test_same_seed_same_split_and_shares():
    train = records(LAYOUT)
    assert hold_out_identities(train, 2, 5) == hold_out_identities(train, 2, 5)
    assert held_out_count(0.4, 5) == 2
    assert held_out_count(0.2, 10) == 2 and held_out_count(0.01, 10) == 1
    assert held_out_count(4, 10) == 4 and held_out_count(4.0, 10) == 4
    kept, query, gallery = hold_out_identities(train, 0)
    assert kept == train and query == gallery == []


def test_impossible_requests_are_named():
    with pytest.raises(DatasetError, match="only 5 training identities are seen by two cameras"):
        hold_out_identities(records(LAYOUT), 6)
    with pytest.raises(DatasetError, match="leaves fewer than 2 to train on"):
        hold_out_identities(records({1: [1, 2], 2: [1, 2]}), 1)
    for bad in (-1, 1.5, True):
        with pytest.raises(DatasetError, match="data.val_ids"):
            held_out_count(bad, 10)


@pytest.mark.slow
def test_training_validates_on_held_out_identities_only(trained_run):
    # The run tests/conftest.py shares holds out 5 of its 10 training identities.
    from reid.config import config_from_dict
    from reid.data import load_dataset
    from reid.engine.trainer import training_dataset

    cfg = trained_run.config
    full = load_dataset(cfg.data)
    dataset = training_dataset(full, cfg)
    test_paths = {r.path for r in full.query + full.gallery}
    held_paths = {r.path for r in dataset.query + dataset.gallery}
    assert not held_paths & test_paths  # validation never touches the test split
    assert held_paths <= {r.path for r in full.train}
    assert dataset.num_train_pids == full.num_train_pids - 5
    assert not held_paths & {r.path for r in dataset.train}
    assert "validation: 5 training identities held out" in dataset.summary()
    # The run's last validation was of these identities (the test split has other counts).
    assert trained_run.final_metrics["num_query"] == len(dataset.query) != len(full.query)
    assert trained_run.final_metrics["num_gallery"] == len(dataset.gallery)
    assert training_dataset(full, config_from_dict({"data": {"val_ids": 0}})) is full
