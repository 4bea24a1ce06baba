"""embedding_spread and collapse_warning: hand-worked spreads, invariances, and the threshold."""

from __future__ import annotations

import numpy as np
import pytest

from reid.evaluation import collapse_warning, embedding_spread
from reid.evaluation.collapse import COLLAPSE_SPREAD, MAX_ROWS


def test_hand_worked_spreads():
    # One vector repeated has no spread; fewer than two rows has none to measure.
    assert embedding_spread(np.tile([[3.0, 4.0]], (5, 1))) == pytest.approx(0.0, abs=1e-12)
    assert embedding_spread(np.ones((1, 4))) is None
    assert collapse_warning(embedding_spread(np.ones((1, 4))), "one image") is None
    # Two orthogonal rows sit 45 degrees from their mean direction.
    assert embedding_spread(np.eye(2)) == pytest.approx(1 - np.sqrt(0.5))
    # Rows 0, 90 and 180 degrees apart: the mean points at the middle one, the others are
    # 90 degrees from it.
    assert embedding_spread(np.array([[1.0, 0], [0, 1], [-1, 0]])) == pytest.approx(1.0)
    # Rows that cancel out are as spread as rows can be.
    assert embedding_spread(np.array([[1.0, 2.0], [-1.0, -2.0]])) == 2.0


def test_spread_ignores_row_length_and_order():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(50, 8))
    spread = embedding_spread(rows)
    scaled = rows * rng.uniform(0.1, 10, size=(50, 1))
    assert embedding_spread(scaled) == pytest.approx(spread)
    assert embedding_spread(rows[::-1]) == pytest.approx(spread)


def test_the_threshold_separates_a_collapse_from_random_embeddings():
    rng = np.random.default_rng(1)
    direction = rng.normal(size=64)
    collapsed = direction + 1e-4 * rng.normal(size=(300, 64))  # what a collapsed run gives
    message = collapse_warning(embedding_spread(collapsed), "the gallery")
    assert message is not None and message.startswith(
        "warning: the embeddings of the gallery have collapsed")
    # All-positive features (as ReLU networks at random weights give) are close together, but
    # far from collapsed.
    positive = np.abs(rng.normal(size=(300, 64))) + 1.0
    assert embedding_spread(positive) > 100 * COLLAPSE_SPREAD
    assert collapse_warning(embedding_spread(positive), "the gallery") is None


def test_large_inputs_are_sampled_and_a_collapse_is_still_seen():
    rng = np.random.default_rng(2)
    rows = np.tile(rng.normal(size=(1, 16)), (3 * MAX_ROWS, 1))
    assert embedding_spread(rows) < COLLAPSE_SPREAD
    rows[1::2] *= -1  # every other row flipped: the sample sees both halves
    assert embedding_spread(rows) == 2.0
