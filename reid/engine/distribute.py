"""Where a run trains: one device, every local GPU, or several machines, through tf.distribute.

``train.strategy`` picks TensorFlow's own engine for it (no home-made gradient exchange):

* ``default``: one device, as a plain Keras loop would;
* ``mirrored``: :class:`tf.distribute.MirroredStrategy` over every local GPU (the CPU alone
  when there is none);
* ``multi_worker``: :class:`tf.distribute.MultiWorkerMirroredStrategy`, which reads the cluster
  from the ``TF_CONFIG`` environment variable of each worker process.

Every replica trains on a whole P x K batch of its own identities (the global batch is
replicas x P x K, :class:`reid.data.pipeline.TrainInput`), so the triplet and center losses see
complete batches. Gradients are summed across replicas by the Keras optimizer; the loss each
replica differentiates is its own mean divided by the number of replicas, so the sum is the
gradient of the mean over the global batch.

Batch norm: with ``train.sync_batchnorm`` the batch statistics are computed over the global
batch (Keras' ``synchronized=True``, TensorFlow's SyncBatchNormalization), one all-reduce per
layer and step. Without it each replica normalises with its own batch, as per-GPU batch norm
does, and the moving statistics are averaged across replicas after every step, so that every
worker holds the same model and the export reflects all of the data.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import keras
import tensorflow as tf

from reid.choices import STRATEGIES
from reid.config import ConfigError, TrainConfig
from reid.engine.cluster import (TF_CONFIG, ClusterError, check_own_port_free,  # noqa: F401
                                 check_tf_config, local_tf_configs, parse_tf_config,
                                 unresolved_hosts)
from reid.engine.supervisor import Supervision
from reid.modeling.errors import first_line
from reid.utils.quiet import held_stderr


@dataclasses.dataclass(frozen=True)
class Placement:
    """The strategy of a run and this process's part in it."""

    strategy: tf.distribute.Strategy
    name: str
    #: Replicas in sync: the global batch is this many P x K batches.
    replicas: int
    #: This worker's index and the number of workers (1 but for multi_worker).
    worker: int = 0
    workers: int = 1

    @property
    def is_chief(self) -> bool:
        """The worker that writes checkpoints, logs and exports (worker 0, or the ``chief``
        task when the cluster names one)."""
        return self.worker == 0

    def describe(self) -> str:
        if self.name == "default":
            return "one device"
        where = ", ".join(self.strategy.extended.worker_devices)
        if self.name == "mirrored":
            alone = (" (no GPU found: the CPU alone)" if self.replicas == 1 and "GPU" not in where
                     else "")
            return f"mirrored over {self.replicas} replica(s), {where}{alone}"
        return (f"multi_worker: worker {self.worker} of {self.workers}, {self.replicas} "
                f"replica(s) in all")


#: How long a worker waits for the others by default (``train.cluster_timeout_seconds``).
CLUSTER_TIMEOUT = TrainConfig().cluster_timeout_seconds


def make_placement(name: str, log: Callable[[str], None] = lambda _: None, *,
                   cluster_timeout: float = CLUSTER_TIMEOUT,
                   supervision: Supervision | None = None) -> Placement:
    """The strategy ``train.strategy`` names. Create it before any other TensorFlow work: a
    multi-worker strategy configures the runtime's collectives, and waits (saying so through
    ``log``) until every worker of ``TF_CONFIG`` has started.

    TensorFlow holds this process while it waits: only a supervising process can bound the
    wait (``cluster_timeout`` seconds) and end it on a signal, told through ``supervision``
    when the wait starts and ends (:mod:`reid.engine.supervisor`). Without one, the wait is
    unbounded.
    """
    if name == "default":
        strategy = tf.distribute.get_strategy()
        return Placement(strategy, name, 1)
    if name == "mirrored":
        with held_stderr():  # its device probe repeats TensorFlow's start-up chatter
            strategy = tf.distribute.MirroredStrategy()
        return Placement(strategy, name, strategy.num_replicas_in_sync)
    if name == "multi_worker":
        cluster = parse_tf_config(os.environ.get(TF_CONFIG))
        check_own_port_free(cluster)
        if supervision is not None:
            supervision.waiting(cluster_timeout)
        missing = unresolved_hosts(cluster)
        bound = f" up to {cluster_timeout:g} s" if supervision is not None else ""
        log(f"{cluster.who}: waiting{bound} for every worker {TF_CONFIG} names"
            + (f" (host not found yet: {', '.join(missing)})" if missing else ""))
        try:
            with held_stderr():
                strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except tf.errors.OpError as exc:  # say, the port taken since it was checked
            raise ClusterError(f"{TF_CONFIG}: {cluster.who}: the cluster could not start "
                               f"({type(exc).__name__}: {first_line(exc)})") from None
        if supervision is not None:
            supervision.formed()  # every worker has registered
        return Placement(strategy, name, strategy.num_replicas_in_sync, cluster.worker,
                         cluster.workers)
    raise ConfigError(f"train.strategy: expected one of {', '.join(STRATEGIES)}, got {name!r}")


def local_replicas(context: tf.distribute.InputContext) -> range:
    """The replicas (by index in the global batch) whose batches this input pipeline makes:
    each pipeline (one per worker) serves its own consecutive replicas."""
    per_pipeline = context.num_replicas_in_sync // context.num_input_pipelines
    first = context.input_pipeline_id * per_pipeline
    return range(first, first + per_pipeline)


def _batch_norms(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every batch norm of ``model``, nested models' included."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization)]


def synchronize_batchnorm(model: keras.Model) -> None:
    """Compute every batch norm's training statistics over the global batch. Keras reads
    ``synchronized`` at call time, so layers that the backbone builder made plain are switched
    in place."""
    for layer in _batch_norms(model):
        layer.synchronized = True


def moving_statistics(model: keras.Model) -> list:
    """The moving means and variances of every batch norm of ``model``."""
    return [variable for layer in _batch_norms(model)
            for variable in (layer.moving_mean, layer.moving_variance)]


def average_across_replicas(variables: list) -> None:
    """Set each replica's copy of ``variables`` to their mean over the replicas; call inside
    ``strategy.run``. Nothing happens on a single replica."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1 or not variables:
        return
    # Read as tensors: a variable handed to all_reduce is taken for its destinations.
    means = context.all_reduce(tf.distribute.ReduceOp.MEAN,
                               [tf.identity(v.value) for v in variables])
    for variable, mean in zip(variables, means):
        variable.assign(mean)


def barrier(placement: Placement) -> None:
    """Wait until every replica gets here (one tiny all-reduce): workers leave together, so a
    worker does not exit while the chief still writes."""
    if placement.replicas == 1:
        return
    strategy = placement.strategy

    @tf.function
    def meet() -> tf.Tensor:
        ones = strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, tf.ones([])))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, ones, axis=None)

    meet()
