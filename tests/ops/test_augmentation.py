"""The paper's frame augmentation through the project's own functions, as distributions.

A coloured, left-right asymmetric frame (left half reddish, right half
bluish, both with max channel V = 0.75 and min m = 0.45, so no jitter clips)
goes through `l3.ops.image.train_image` and through the pair pipeline
(`l3.pairs.make_dataset`, training, whose uint8 frames the training step
finishes with `l3.ops.image.jitter_batch`) from real TFRecords, both when the
stored frame must be resized (decode, resize, crop: `train_image`) and when it
is already at the preset's `resize_side` (crop-then-decode,
`decode_and_crop_jpeg`). From each output the augmentation is read back:

* flipped: the left edge shows the right half's colour;
* brightness delta = out_max - V (brightness is added first, saturation
  keeps the max channel);
* saturation factor = (out_max - out_min) / (V - m).

Asserted: flips at rate 0.5, delta uniform in +-32/255, factor uniform in
[0.5, 1.5] (`constants.BRIGHTNESS_MAX_DELTA`, `SATURATION_RANGE`), and the
three paths give the same distributions (two-sample KS tests).
"""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy import stats

from l3.core import constants as C, presets
from l3.ops import image
from l3.pairs import pipeline as pairs
from l3.records import schema as records

SMALL = presets.SMALL
V, M = 0.75, 0.45
LEFT = np.array([V, M, M])   # reddish
RIGHT = np.array([M, M, V])  # bluish
N = 320


def _frame(height: int, width: int) -> np.ndarray:
    """uint8 [height, width, 3]: LEFT colour on the left half, RIGHT on the right."""
    img = np.empty((height, width, 3))
    img[:, :width // 2] = LEFT
    img[:, width // 2:] = RIGHT
    return np.round(img * 255).astype(np.uint8)


def _jpeg(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def _read_back(out: np.ndarray):
    """(flipped, brightness delta, saturation factor) of one augmented [64, 64, 3] view.

    Crops of 64 columns out of a 72-high frame's 96 (or the resized 128's 96)
    always keep columns 0..15 on one side of the boundary and 48..63 on the other.
    """
    left = out[4:-4, 2:14].reshape(-1, 3).mean(0)
    flipped = left[2] > left[0]
    hi, lo = left.max(), left.min()
    return flipped, hi - V, (hi - lo) / (V - M)


def _summaries(views):
    flips, deltas, factors = zip(*[_read_back(v) for v in views])
    return np.array(flips), np.array(deltas), np.array(factors)


def _write_records(path: str, frame: np.ndarray, videos: int = 8):
    jpeg = _jpeg(frame)
    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(path) as w:
        for i in range(videos):
            audio = np.round(0.1 * rng.standard_normal(2 * C.SAMPLE_RATE) * 32767).astype(np.int16)
            ex = records.make_example(video_id=f"v{i}", frames=[jpeg] * 4,
                                      frame_times=[0.0, 0.5, 1.0, 1.5], audio=audio,
                                      label="a", split="train")
            w.write(ex.SerializeToString())
    return path


def _pipeline_views(path: str, n: int):
    """The pipeline's uint8 training frames, finished as the training step does:
    `image.jitter_batch` (scaling to [0, 1], brightness and saturation) per batch."""
    options = pairs.PipelineOptions(batch_size=32, seed=3,
                                    num_pairs=n)
    ds = pairs.make_dataset(path, SMALL, training=True, options=options)
    views = []
    for i, batch in enumerate(ds):
        assert batch[0].dtype == tf.uint8  # frames travel as uint8 (issue 11)
        views.append(image.jitter_batch(batch[0], tf.constant([3, i], tf.int64)).numpy())
    views = np.concatenate(views)[:n]
    assert len(views) == n
    return views


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("augment")
    sized = _write_records(os.path.join(root, "sized.tfrecord"), _frame(SMALL.resize_side, 96))
    larger = _write_records(os.path.join(root, "larger.tfrecord"), _frame(96, 128))
    return {"crop_decode": _pipeline_views(sized, N), "resize": _pipeline_views(larger, N),
            "train_image": np.stack(list(tf.data.Dataset.range(N).map(
                lambda i: image.train_image(_frame(96, 128), tf.stack([i, 17]),
                                            resize_side=SMALL.resize_side,
                                            image_size=SMALL.image_size)).as_numpy_iterator()))}


@pytest.mark.parametrize("path", ["train_image", "crop_decode", "resize"])
def test_flip_brightness_and_saturation_distributions(paths, path):
    views = paths[path]
    assert views.shape == (N, SMALL.image_size, SMALL.image_size, 3)
    flips, deltas, factors = _summaries(views)
    # Flips: Binomial(N, 0.5); 4 standard deviations.
    assert abs(flips.mean() - 0.5) < 4 * 0.5 / np.sqrt(N), flips.mean()
    # The right edge shows the other colour (a flip, not a colour change).
    right = views[:, 4:-4, -14:-2].reshape(N, -1, 3).mean(1)
    np.testing.assert_array_equal(right[:, 0] > right[:, 2], flips)
    # Brightness delta ~ U(-32/255, 32/255) (JPEG: ~2/255 of error).
    d = C.BRIGHTNESS_MAX_DELTA
    assert deltas.min() > -d - 0.01 and deltas.max() < d + 0.01
    assert deltas.min() < -0.8 * d and deltas.max() > 0.8 * d
    assert stats.kstest(deltas / d, stats.uniform(-1, 2).cdf).pvalue > 1e-3
    # Saturation factor ~ U(0.5, 1.5).
    lo, hi = C.SATURATION_RANGE
    assert factors.min() > lo - 0.03 and factors.max() < hi + 0.03
    assert factors.min() < lo + 0.1 and factors.max() > hi - 0.1
    assert stats.kstest(factors, stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3


def test_the_paths_have_the_same_distributions(paths):
    base = _summaries(paths["train_image"])
    for path in ("crop_decode", "resize"):
        other = _summaries(paths[path])
        assert abs(base[0].mean() - other[0].mean()) < 5 * 0.5 * np.sqrt(2 / N)
        for a, b in zip(base[1:], other[1:]):
            assert stats.ks_2samp(a, b).pvalue > 1e-3, path
    # Views differ from one another (the seeds are per element, not shared).
    flat = paths["crop_decode"].reshape(N, -1)
    assert len(np.unique(flat.round(3), axis=0)) > 0.9 * N


def test_saturation_jitter_acts_on_colour():
    """On a grey frame saturation does nothing; on this one it must move the chroma."""
    frame = image.to_float(_frame(8, 8))
    chroma = [float(np.ptp(image.color_jitter(frame, tf.constant([i, 1]), brightness=0.0)[0, 0]))
              for i in range(50)]
    assert min(chroma) < 0.6 * (V - M) and max(chroma) > 1.4 * (V - M)
