"""Learning-rate schedule: hand-worked values, and the TF schedule equals the Python reference."""

import numpy as np
import pytest

from reid.config import TrainConfig
from reid.engine.schedule import WarmupSchedule, learning_rate_at


def test_step_schedule_by_hand():
    cfg = TrainConfig(epochs=20, lr=1.0, warmup_epochs=4, warmup_factor=0.1, schedule="step",
                      lr_steps=[10, 15], lr_gamma=0.5)
    assert learning_rate_at(0, cfg) == pytest.approx(0.1)
    assert learning_rate_at(2, cfg) == pytest.approx(0.55)  # halfway from 0.1 to 1.0
    assert learning_rate_at(4, cfg) == pytest.approx(1.0)
    assert learning_rate_at(9.99, cfg) == pytest.approx(1.0)
    assert learning_rate_at(10, cfg) == pytest.approx(0.5)
    assert learning_rate_at(15, cfg) == pytest.approx(0.25)


def test_cosine_schedule_by_hand():
    cfg = TrainConfig(epochs=12, lr=2.0, warmup_epochs=2, schedule="cosine")
    assert learning_rate_at(2, cfg) == pytest.approx(2.0)
    assert learning_rate_at(7, cfg) == pytest.approx(1.0)  # half way through the decay
    assert learning_rate_at(12, cfg) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("schedule, warmup", [("step", 3), ("cosine", 3), ("step", 0),
                                              ("cosine", 0)])
def test_tf_schedule_matches_reference(schedule, warmup):
    cfg = TrainConfig(epochs=10, lr=0.01, warmup_epochs=warmup, schedule=schedule,
                      lr_steps=[5, 8])
    steps_per_epoch = 7
    tf_schedule = WarmupSchedule(cfg, steps_per_epoch)
    steps = np.arange(0, 10 * steps_per_epoch)
    got = np.array([float(tf_schedule(int(s))) for s in steps])
    want = np.array([learning_rate_at(s / steps_per_epoch, cfg) for s in steps])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
