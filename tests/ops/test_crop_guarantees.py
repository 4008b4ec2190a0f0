"""Where the training crop lands, read back from the pixels (issue 23, item 1).

Frames carry a coordinate code (`tests.fixtures.records.coordinate_frame`: red
says the row, green the column), so every crop tells its offsets and whether
it was flipped (`crop_offsets`), independently of how the project draws them.
The offsets must be uniform over 0..(side - size) on each axis (a centre crop,
a fixed offset or a range missing its last position fails), and the flip a
fair coin. The pipeline's crop paths are checked the same way in
tests/pairs/test_sampling_guarantees.py.
"""

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from l3.ops import image
from tests.fixtures.records import coordinate_frame, crop_offsets

N = 800


def uniform_positions_pvalue(offsets, highest: int, seed: int = 0) -> float:
    """KS p-value of integer offsets against the discrete uniform on 0..highest.

    Each offset gets an independent U[0, 1) added (fixed numpy seed): the sum is
    U[0, highest + 1) exactly when the offsets are uniform, so the continuous
    KS test applies without the conservatism of ties.
    """
    offsets = np.asarray(offsets, np.float64)
    jitter = np.random.default_rng(seed).random(len(offsets))
    return stats.kstest(offsets + jitter, stats.uniform(0, highest + 1).cdf).pvalue


def assert_uniform_offsets(offsets, highest: int, name: str):
    offsets = np.asarray(offsets)
    assert offsets.min() >= 0 and offsets.max() <= highest, name
    # Every position is reached, the two extremes included (P(missing one) ~ (1 - 1/45)^800 < 1e-7).
    assert set(offsets.tolist()) == set(range(highest + 1)), (name, sorted(set(offsets.tolist())))
    assert uniform_positions_pvalue(offsets, highest) > 1e-3, (name, np.bincount(offsets))


def assert_fair_coin(flags, name: str):
    flags = np.asarray(flags, bool)
    assert stats.binomtest(int(flags.sum()), len(flags)).pvalue > 1e-3, (name, flags.mean())


def _views(frame, fn, n=N):
    """fn(frame, seed) for seeds [i, 11], i < n, inside tf.data (as the pipeline runs it)."""
    ds = tf.data.Dataset.range(n).map(
        lambda i: fn(tf.constant(frame), tf.stack([i, tf.constant(11, tf.int64)])))
    return np.stack([v for v in ds.batch(n).as_numpy_iterator()][0])


@pytest.mark.parametrize("height,width,side,size", [(100, 150, 72, 64), (80, 56, 48, 40)],
                         ids=["landscape_resized", "portrait_resized"])
def test_train_view_crop_is_uniform_and_flip_a_fair_coin(height, width, side, size):
    frame = coordinate_frame(height, width)
    reference = image.resize_smaller_side(frame, side).numpy()   # the frame the crop sees
    rh, rw = reference.shape[:2]
    views = _views(frame, lambda f, s: image.train_view(f, s, resize_side=side, image_size=size))
    found = np.array([crop_offsets(v, reference) for v in views])
    tops, lefts, flips = found[:, 0], found[:, 1], found[:, 2]
    assert_uniform_offsets(tops, rh - size, "top")
    assert_uniform_offsets(lefts, rw - size, "left")
    assert_fair_coin(flips, "flip")
    # Top and left are independent draws (a shared draw would tie them).
    assert abs(np.corrcoef(tops, lefts)[0, 1]) < 0.15


def test_random_crop_offsets_are_uniform_on_both_axes():
    frame = coordinate_frame(60, 90).astype(np.float32) / 255.0
    crops = _views(frame, lambda f, s: image.random_crop(f, 48, s))
    found = np.array([crop_offsets(c, frame) for c in crops])
    assert not found[:, 2].any()   # random_crop never flips
    assert_uniform_offsets(found[:, 0], 60 - 48, "top")
    assert_uniform_offsets(found[:, 1], 90 - 48, "left")


def test_the_offsets_decoder_reads_planted_crops():
    """The reader itself: hand-cut crops (every top, some lefts, flipped or not) of a
    JPEG-coded frame come back exactly."""
    import io

    from PIL import Image

    frame = coordinate_frame(72, 96)
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=95, subsampling=0)
    decoded = tf.io.decode_jpeg(buf.getvalue(), channels=3).numpy()
    for top in range(0, 9):
        for left in (0, 1, 17, 31, 32):
            crop = decoded[top:top + 64, left:left + 64]
            assert crop_offsets(crop, decoded) == (top, left, False)
            assert crop_offsets(crop[:, ::-1], decoded) == (top, left, True)
