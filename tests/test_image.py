"""Image ops: eager and inside tf.data, shapes, ranges, determinism."""

import numpy as np
import pytest
import tensorflow as tf

from l3 import constants as C, image


def _frame(h=256, w=341, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("h,w", [(480, 640), (640, 480), (256, 256), (100, 180)])
def test_resize_smaller_side(h, w):
    out = image.resize_smaller_side(_frame(h, w), 256)
    assert min(out.shape[:2]) == 256
    assert abs(out.shape[0] / out.shape[1] - h / w) < 0.01
    assert out.dtype == tf.float32


def test_train_image_eager_and_in_tf_data_agree():
    frame = _frame()
    seed = tf.constant([3, 4], tf.int64)
    eager = image.train_image(frame, seed).numpy()
    ds = tf.data.Dataset.from_tensors(frame).map(lambda f: image.train_image(f, seed))
    in_data = next(iter(ds)).numpy()
    assert eager.shape == (C.IMAGE_SIZE, C.IMAGE_SIZE, 3)
    assert 0.0 <= eager.min() and eager.max() <= 1.0
    np.testing.assert_allclose(eager, in_data, atol=1e-6)


def test_train_image_varies_with_seed_and_small_sizes():
    frame = _frame()
    a = image.train_image(frame, tf.constant([1, 1]), resize_side=72, image_size=64).numpy()
    b = image.train_image(frame, tf.constant([1, 2]), resize_side=72, image_size=64).numpy()
    assert a.shape == b.shape == (64, 64, 3)
    assert not np.allclose(a, b)


def test_flip_happens_about_half_the_time():
    # A left-dark / right-bright image: after a flip the left half is brighter.
    frame = np.zeros((256, 256, 3), np.uint8)
    frame[:, 128:] = 255
    flips = 0
    for i in range(200):
        seeds = tf.random.experimental.stateless_split(tf.constant([i, 0]), 3)
        out = tf.image.stateless_random_flip_left_right(image.to_float(frame), seeds[1]).numpy()
        flips += out[:, :64].mean() > out[:, -64:].mean()
    assert 70 < flips < 130


def test_color_jitter_ranges():
    grey = tf.fill([8, 8, 3], 0.5)
    shifts = [float(tf.reduce_mean(image.color_jitter(grey, tf.constant([i, 9])) - 0.5))
              for i in range(100)]
    assert max(abs(s) for s in shifts) <= C.BRIGHTNESS_MAX_DELTA + 1e-6
    assert max(shifts) > 0.08 and min(shifts) < -0.08


def test_eval_image_is_deterministic_centre_crop():
    frame = np.zeros((256, 320, 3), np.uint8)
    frame[:, 160 - 112:160 + 112] = 255  # a white band exactly the width of the crop
    out = image.eval_image(frame).numpy()
    assert out.shape == (224, 224, 3)
    assert out.min() > 0.99
    ds = tf.data.Dataset.from_tensors(frame).map(image.eval_image)
    np.testing.assert_array_equal(next(iter(ds)).numpy(), out)
