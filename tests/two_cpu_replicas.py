"""Batch-norm statistics on two mirrored replicas of this machine's CPU, against numpy.

    python tests/two_cpu_replicas.py

Prints one JSON line: for each way of handling the statistics (each replica its own; each its
own, then averaged with :func:`reid.engine.distribute.average_across_replicas`; synchronised
with :func:`reid.engine.distribute.synchronize_batchnorm`), every replica's moving mean and
variance after one training-mode pass. tests/test_distributed.py runs it in a process of its
own, because the CPU can be split into logical devices only before TensorFlow's runtime starts,
and checks the numbers against the batches' own statistics.
"""

from __future__ import annotations

import json

import numpy as np

#: Each replica's batch: 4 rows of 3 features, far apart so that their statistics differ.
BATCHES = [np.arange(12, dtype=np.float32).reshape(4, 3),
           10.0 + 2.0 * np.arange(12, dtype=np.float32).reshape(4, 3) ** 1.5]
MOMENTUM = 0.5


def main() -> dict:
    from reid.utils.quiet import start_tensorflow_quietly

    start_tensorflow_quietly()
    import keras
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from reid.engine.distribute import (average_across_replicas, make_placement,
                                        moving_statistics, synchronize_batchnorm)

    strategy = make_placement("mirrored").strategy
    batches = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(BATCHES[context.replica_id_in_sync_group]))
    report = {"replicas": strategy.num_replicas_in_sync}
    for mode in ("own", "averaged", "synchronized"):
        with strategy.scope():
            model = keras.Sequential([keras.Input((3,)),
                                      keras.layers.BatchNormalization(momentum=MOMENTUM)])
        if mode == "synchronized":
            synchronize_batchnorm(model)
        statistics = moving_statistics(model)

        def forward(x, statistics=statistics, model=model, mode=mode):
            model(x, training=True)
            if mode == "averaged":
                average_across_replicas(statistics)

        strategy.run(tf.function(forward), args=(batches,))
        report[mode] = [[np.asarray(copy).tolist() for copy in v.value.values]
                        for v in statistics]
    return report


if __name__ == "__main__":
    print(json.dumps(main()))
