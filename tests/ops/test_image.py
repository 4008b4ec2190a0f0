"""Image ops: eager and inside tf.data, shapes, ranges, determinism."""

import numpy as np
import pytest
import tensorflow as tf

from l3.core import constants as C
from l3.ops import image


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


def _coordinates(h, w):
    """uint8 [h, w, 3] whose pixel (r, c) is (r, c, 7): a crop shows where it was taken."""
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([rows, cols, np.full_like(rows, 7)], -1).astype(np.uint8)


@pytest.mark.parametrize("h,w,size,top,left", [(256, 320, 224, 16, 48), (81, 64, 64, 8, 0),
                                               (72, 75, 64, 4, 5), (64, 64, 64, 0, 0)])
def test_center_crop_takes_the_hand_computed_window_eager_and_in_tf_data(h, w, size, top, left):
    # Hand-computed (h - size) // 2, (w - size) // 2: an odd slack (81 - 64 = 17, 75 - 64 = 11)
    # leaves the extra row / column at the bottom / right.
    assert image.center_offsets(h, w, size) == (top, left)
    t, l_ = image.center_offsets(tf.constant(h), tf.constant(w), size)
    assert (int(t), int(l_)) == (top, left)
    frame = _coordinates(h, w)
    want = frame[top:top + size, left:left + size]
    eager = np.asarray(image.center_crop(frame, size))
    np.testing.assert_array_equal(eager, want)
    in_data = next(iter(tf.data.Dataset.from_tensors(frame).map(lambda f: image.center_crop(f, size))))
    np.testing.assert_array_equal(in_data.numpy(), want)
    # Float input, unknown shape inside a tf.function: the same window.
    fn = tf.function(lambda f: image.center_crop(f, size),
                     input_signature=[tf.TensorSpec([None, None, 3], tf.float32)])
    np.testing.assert_array_equal(fn(frame.astype(np.float32)).numpy(), want.astype(np.float32))


# --- the device half of the training augmentation (uint8 frames to the device) ------

def _reference_jitter(image, delta, factor):
    """TF's own ops, one image at a time: brightness, HSV saturation kernel, clip."""
    out = tf.image.adjust_saturation(tf.image.adjust_brightness(image, delta), factor)
    return tf.clip_by_value(out, 0.0, 1.0).numpy()


def test_jitter_batch_matches_tf_brightness_and_saturation_per_image():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (6, 24, 24, 3)).astype(np.uint8)
    frames[0, :6] = 128        # grey pixels
    frames[1, :6] = 0          # black: v <= 0 after a negative brightness
    frames[2, :6] = [250, 255, 3]  # saturated, pushed above 1 by brightness
    seed = tf.constant([4, 2], tf.int64)
    out = image.jitter_batch(frames, seed).numpy()
    delta, factor = (x.numpy() for x in image.jitter_parameters(6, seed))
    assert out.dtype == np.float32 and out.shape == frames.shape
    for b in range(6):
        ref = _reference_jitter(image.to_float(frames[b]), delta[b], factor[b])
        np.testing.assert_allclose(out[b], ref, atol=2e-6)
    # Extreme factors and deltas too (beyond the training ranges).
    x = image.to_float(frames)
    for d, f in ((-0.3, 1.5), (0.3, 0.5), (0.1, 4.0), (-0.05, 0.0)):
        got = np.clip(image.adjust_saturation_batch(x + d, tf.fill([6], f)).numpy(), 0, 1)
        for b in range(6):
            np.testing.assert_allclose(got[b], _reference_jitter(x[b], d, f), atol=2e-6)


def test_jitter_batch_draws_as_color_jitter_draws():
    """Same distribution as the host's `color_jitter` (TF's stateless_random_*):
    brightness read off a grey pixel, saturation off a coloured one, over many
    seeds; two-sample Kolmogorov-Smirnov against color_jitter's, and a uniform fit."""
    from scipy import stats

    probe = np.zeros((2, 2, 3), np.float32)
    probe[0] = 0.5
    probe[1] = [0.5, 0.45, 0.4]  # saturation 0.2: factor f moves blue to v - 0.1 f

    def read(out):  # [..., 2, 2, 3] -> (delta, factor)
        delta = out[..., 0, 0, 0] - 0.5
        return delta, (out[..., 1, 0, 0] - out[..., 1, 0, 2]) / 0.1

    n = 400
    host = np.stack([image.color_jitter(probe, tf.constant([i, 7])).numpy() for i in range(n)])
    device = image.jitter_batch(np.broadcast_to(probe, (n, 2, 2, 3)), tf.constant([3, 1])).numpy()
    for a, b, (low, high) in zip(read(host), read(device),
                                 ((-C.BRIGHTNESS_MAX_DELTA, C.BRIGHTNESS_MAX_DELTA), C.SATURATION_RANGE)):
        assert stats.ks_2samp(a, b).pvalue > 1e-3
        assert stats.kstest(b, stats.uniform(low, high - low).cdf).pvalue > 1e-3
        assert low - 1e-5 <= b.min() and b.max() <= high + 1e-5


def test_train_view_is_train_image_without_the_jitter():
    """uint8 view + the device jitter with zero ranges == train_image's geometry:
    the same crop and flip for the same seed (the resize rounds to uint8)."""
    frame = _frame(300, 400)
    for i in range(4):
        seed = tf.constant([i, 5], tf.int64)
        view = image.train_view(frame, seed)
        assert view.dtype == tf.uint8 and view.shape == (C.IMAGE_SIZE, C.IMAGE_SIZE, 3)
        seeds = tf.random.experimental.stateless_split(seed, 3)
        plain = image.resize_smaller_side(frame, C.RESIZE_SMALLER_SIDE)
        plain = tf.image.stateless_random_flip_left_right(
            image.random_crop(plain, C.IMAGE_SIZE, seeds[0]), seeds[1]).numpy()
        finished = image.jitter_batch(view[None], seed, brightness=0.0, saturation=(1.0, 1.0))[0]
        np.testing.assert_allclose(finished.numpy(), plain, atol=0.5 / 255 + 1e-6)
