"""Learning rate: linear warm-up, then a step or cosine schedule, as a function of the step.

The rate is a pure function of the optimizer's iteration count, so a resumed run (which restores
the count) continues on exactly the same curve.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import tensorflow as tf

from reid.config import TrainConfig


def learning_rate_at(epoch: float, cfg: TrainConfig) -> float:
    """Rate at a fractional epoch (``step / steps_per_epoch``); a reference for the TF schedule.

    Warm-up rises linearly from ``warmup_factor * lr`` to ``lr`` over ``warmup_epochs``; the step
    schedule then multiplies by ``lr_gamma`` at each epoch in ``lr_steps`` (counted from the start
    of training, as the strong baseline does); the cosine schedule decays from ``lr`` to 0 over the
    epochs after warm-up.
    """
    if epoch < cfg.warmup_epochs:
        alpha = epoch / cfg.warmup_epochs
        return cfg.lr * (cfg.warmup_factor * (1 - alpha) + alpha)
    if cfg.schedule == "step":
        drops = sum(1 for milestone in cfg.lr_steps if epoch >= milestone)
        return cfg.lr * cfg.lr_gamma**drops
    span = max(cfg.epochs - cfg.warmup_epochs, 1)
    progress = min((epoch - cfg.warmup_epochs) / span, 1.0)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


@keras.saving.register_keras_serializable(package="reid")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """:func:`learning_rate_at` in TensorFlow ops, driven by the optimizer's iteration count."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int):
        self.cfg = cfg
        self.steps_per_epoch = steps_per_epoch

    def __call__(self, step):
        cfg = self.cfg
        epoch = tf.cast(step, tf.float32) / float(self.steps_per_epoch)
        lr = tf.constant(cfg.lr, tf.float32)
        if cfg.warmup_epochs > 0:
            alpha = epoch / float(cfg.warmup_epochs)
            warm = lr * (cfg.warmup_factor * (1 - alpha) + alpha)
        else:
            warm = lr
        if cfg.schedule == "step":
            drops = tf.add_n([tf.cast(epoch >= m, tf.float32) for m in cfg.lr_steps]
                             or [tf.constant(0.0)])
            after = lr * tf.pow(tf.constant(cfg.lr_gamma, tf.float32), drops)
        else:
            span = float(max(cfg.epochs - cfg.warmup_epochs, 1))
            progress = tf.minimum((epoch - cfg.warmup_epochs) / span, 1.0)
            after = lr * 0.5 * (1 + tf.cos(math.pi * progress))
        return tf.where(epoch < cfg.warmup_epochs, warm, after)

    def get_config(self):
        return {"cfg": dataclasses.asdict(self.cfg), "steps_per_epoch": self.steps_per_epoch}

    @classmethod
    def from_config(cls, config):
        return cls(TrainConfig(**config["cfg"]), config["steps_per_epoch"])
