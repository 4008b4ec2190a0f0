"""What the training pair stream guarantees, read back from its output (issue 23, item 1).

Black-box: only `l3.pairs.make_dataset(..., include_metadata=True)` and the
pixels it yields, so these tests hold whatever the stream's internals are.

* Crop position: frames carry a coordinate code (`coordinate_frame`), so each
  training image tells its crop offsets and flip (`crop_offsets`). Frames
  already at the preset's `resize_side` take the crop-window decode path;
  twice as large ones are decoded at half scale (DCT) and go through
  `train_view`. Both must give offsets uniform over 0..(side - size), and the
  same offsets and flips for the same seed (same records, same stream).
* Negatives: with few videos, batches repeat videos; a negative's window
  never comes from its frame's video, negatives' windows sit where
  positives' do in their tracks (KS), and no (video, window) appears twice
  in a batch.
"""

import io

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from l3.core.presets import SMALL
from l3.ops import image as image_lib
from l3.pairs import pipeline as pairs
from tests.fixtures.records import SyntheticCorpus, coordinate_frame, crop_offsets
from tests.ops.test_crop_guarantees import assert_fair_coin, assert_uniform_offsets

SIDE, SIZE = SMALL.resize_side, SMALL.image_size        # 72, 64
RESIZED = (SIDE, SIDE + 16)                             # frames 72 x 88 once resized
# Few records open at once: the same guarantees, a fraction of the default's start-up.
LIGHT = dict(pairs_per_video=4, open_videos=8)


def _stream(paths, batches, batch_size=32, seed=5, **kwargs):
    """(images, labels, metadata) of the first `batches` deterministic training batches."""
    ds = pairs.make_dataset(paths, SMALL, training=True, options=pairs.PipelineOptions(
        batch_size=batch_size, seed=seed, include_metadata=True, **kwargs))
    out = [b for _, b in zip(range(batches), ds)]
    images = np.concatenate([b[0].numpy() for b in out])
    labels = np.concatenate([b[2].numpy() for b in out])
    meta = {k: np.concatenate([b[3][k].numpy() for b in out]) for k in out[0][3]}
    return images, labels, meta


def _reference(frame_size):
    """The coded frame as the crop sees it: JPEG-decoded (as the corpus writes it), resized."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(coordinate_frame(*frame_size)).save(buf, format="JPEG", quality=95, subsampling=0)
    decoded = tf.io.decode_jpeg(buf.getvalue(), channels=3)
    return image_lib.resize_smaller_side(decoded, SIDE).numpy()


@pytest.fixture(scope="module")
def crop_streams(tmp_path_factory):
    """{path name: (offsets [n, 3] (top, left, flipped), metadata)} for the same
    corpus and seed, frames at resize_side (crop-window decode) and at twice it."""
    out = {}
    for name, scale in (("crop_decode", 1), ("decode_resize", 2)):
        size = (RESIZED[0] * scale, RESIZED[1] * scale)
        corpus = SyntheticCorpus(num_videos=6, seconds=3.0, fps=8.0, frame_size=size,
                                 frame_pattern="coordinates")
        paths = corpus.write(str(tmp_path_factory.mktemp(name)), num_shards=2)
        images, _, meta = _stream(paths, batches=12, **LIGHT)
        reference = _reference(size)
        assert reference.shape[:2] == RESIZED
        out[name] = (np.array([crop_offsets(im, reference) for im in images]), meta)
    return out


@pytest.mark.parametrize("path", ["crop_decode", "decode_resize"])
def test_pipeline_crop_offsets_are_uniform_and_flip_a_fair_coin(crop_streams, path):
    found, _ = crop_streams[path]
    assert len(found) == 384
    assert_uniform_offsets(found[:, 0], RESIZED[0] - SIZE, f"{path} top")
    assert_uniform_offsets(found[:, 1], RESIZED[1] - SIZE, f"{path} left")
    assert_fair_coin(found[:, 2], f"{path} flip")


def test_both_crop_paths_give_the_same_views_for_the_same_seed(crop_streams):
    (a, meta_a), (b, meta_b) = crop_streams["crop_decode"], crop_streams["decode_resize"]
    for key in ("frame_video_id", "frame_index", "audio_start"):   # the same draws ...
        np.testing.assert_array_equal(meta_a[key], meta_b[key])
    np.testing.assert_array_equal(a, b)                          # ... the same crops and flips


# --- negatives ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def few_videos(tmp_path_factory):
    """4 videos of 4 s in 2 shards: a batch of 16 repeats every video."""
    corpus = SyntheticCorpus(num_videos=4, seconds=4.0, fps=4.0, seed=7)
    paths = corpus.write(str(tmp_path_factory.mktemp("few_videos")), num_shards=2)
    batches = 32
    _, labels, meta = _stream(paths, batches=batches, batch_size=16, seed=3, **LIGHT)
    return corpus, labels.reshape(batches, 16), {k: v.reshape(batches, 16) for k, v in meta.items()}


def test_a_negative_never_takes_its_own_videos_window_when_batches_repeat_videos(few_videos):
    _, labels, meta = few_videos
    frame_ids, audio_ids = meta["frame_video_id"], meta["audio_video_id"]
    # The situation the rule is about: every batch holds some video more than once.
    assert all(len(set(row)) < len(row) for row in frame_ids)
    neg = labels == 0
    assert np.all(frame_ids[neg] != audio_ids[neg])
    assert np.all(frame_ids[~neg] == audio_ids[~neg])
    assert np.all(labels.sum(axis=1) == 8)


def test_negative_windows_sit_where_positive_windows_sit(few_videos):
    """Window start within its track (seconds from the track's start, all tracks 4 s
    long): the same distribution for negatives and positives, spread over the track."""
    corpus, labels, meta = few_videos
    index = np.vectorize(corpus.video_index)(meta["audio_video_id"])
    start = meta["audio_start"] - np.asarray(corpus.audio_start)[index]
    pos, neg = start[labels == 1], start[labels == 0]
    assert stats.ks_2samp(pos, neg).pvalue > 1e-3
    for starts in (pos, neg):
        assert 0.0 <= starts.min() and starts.max() <= 3.0
        # A window containing a uniform frame time spans the track (not stuck at its start).
        assert starts.min() < 0.1 and starts.max() > 2.9 and 1.0 < np.median(starts) < 2.0


def _repeated_windows(meta):
    """Per batch: how many pairs use a (video, window start) that another pair of the batch uses."""
    out = []
    for ids, starts in zip(meta["audio_video_id"], meta["audio_start"]):
        windows = list(zip(ids.tolist(), starts.tolist()))
        counts = {w: windows.count(w) for w in windows}
        out.append(sum(c for c in counts.values() if c > 1))
    return np.array(out)


def test_no_video_window_twice_in_a_batch_of_distinct_videos(tmp_path):
    """Each negative takes another negative's window (never a positive's): with one
    draw per video in a batch, every window appears once."""
    corpus = SyntheticCorpus(num_videos=48, seconds=2.0, fps=2.0, seed=4)
    paths = corpus.write(str(tmp_path), num_shards=3)
    batches = 24
    _, labels, meta = _stream(paths, batches=batches, batch_size=8, seed=1, pairs_per_video=1,
                              shuffle_pairs=8)
    meta = {k: v.reshape(batches, 8) for k, v in meta.items()}
    distinct = np.array([len(set(row)) == len(row) for row in meta["frame_video_id"]])
    assert distinct.sum() >= batches // 2          # the case this test is about
    assert np.all(_repeated_windows(meta)[distinct] == 0)


def test_no_video_window_twice_in_a_batch_that_repeats_videos(few_videos):
    """Negatives' donors are an assignment (a shift over the negatives grouped by video),
    not a scan: two negatives of one video never share a donor. A repeat is unavoidable
    only where one video holds more than half of a batch's negatives."""
    corpus, labels, meta = few_videos
    feasible = np.array([max(np.unique(ids[lab == 0], return_counts=True)[1]) * 2 <= (lab == 0).sum()
                         for ids, lab in zip(meta["frame_video_id"], labels)])
    assert feasible.sum() >= len(feasible) * 3 // 4      # the case this test is about
    # Windows of frames at a track's first or last second are pinned to its edge (start
    # 0 or 3 s), so two draws can meet there by chance: only inner windows are counted.
    index = np.vectorize(corpus.video_index)(meta["audio_video_id"])
    start = meta["audio_start"] - np.asarray(corpus.audio_start)[index]
    inner = (start > 1e-3) & (start < 3.0 - 1e-3)
    starts = np.where(inner, meta["audio_start"], -1.0 - np.arange(start.size).reshape(start.shape))
    assert np.all(_repeated_windows({**meta, "audio_start": starts})[feasible] == 0)
