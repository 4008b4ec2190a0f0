"""Mixed precision for training: Keras dtype policies and replica-agreed loss scaling."""

import contextlib

import keras
import tensorflow as tf

MIXED_PRECISION = {"none": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


@contextlib.contextmanager
def dtype_policy(mixed_precision: str):
    """Sets Keras' global dtype policy for building a model, then restores it."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(MIXED_PRECISION[mixed_precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class ReplicaSyncedLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Loss scaling whose "gradients are finite" test is agreed by all replicas.

    Keras checks finiteness on each replica's local gradients, before the
    optimiser all-reduces them: replicas could then disagree, one skipping the
    step while the others apply it. Here the verdict is all-reduced first.
    """

    def check_finite(self, grads):
        finite = super().check_finite(grads)
        ctx = tf.distribute.get_replica_context()
        if ctx is None or ctx.num_replicas_in_sync == 1:
            return finite
        bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                             tf.cast(tf.logical_not(finite), tf.float32))
        return tf.equal(bad, 0.0)
