"""The supervised baselines' input meets frames that are not whole JPEGs (issue 24.1):
they are never picked, a record with none left is skipped, the first record
holding some is named; with "stop" the input ends there."""

import numpy as np
import pytest
import tensorflow as tf

from l3.core.presets import SMALL
from l3.eval.transfer import supervised
from l3.pairs import sampling
from tests.fixtures.records import SyntheticCorpus, truncated_jpeg, write_with_bad_frames

CORPUS = SyntheticCorpus(num_videos=4, seconds=3.0, fps=4.0, frame_size=(72, 96), seed=7,
                         labels=["a", "b"])
NOT_JPEG = lambda jpeg: b"not a jpeg"  # noqa: E731


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    """Video 1: every frame but 3 damaged; video 2: every frame damaged."""
    path = str(tmp_path_factory.mktemp("transfer_bad") / "train-00000-of-00001.tfrecord")
    n = len(CORPUS.frame_times(1))
    return write_with_bad_frames(CORPUS, path, {
        1: {k: truncated_jpeg if k % 2 else NOT_JPEG for k in range(n) if k != 3},
        2: {k: NOT_JPEG for k in range(n)}})


@pytest.mark.parametrize("training", [False, True])
def test_only_whole_frames_are_picked(shard, training, capfd):
    ds = supervised.classification_dataset([shard], SMALL, ["a", "b"], modality="vision",
                                           training=training, batch_size=4, seed=1)
    if training:
        ds = ds.take(6)
    seen = {}
    for images, labels in ds.as_numpy_iterator():
        for image, label in zip(images, labels):
            video, k = CORPUS.decode_frame(image)
            assert CORPUS.label(video) == ["a", "b"][label]
            seen.setdefault(video, set()).add(k)
    assert 2 not in seen and set(seen) == {0, 1, 3}, seen
    assert seen[1] == {3}
    n = len(CORPUS.frame_times(1))
    err = capfd.readouterr().err
    assert (f"{n - 1} {sampling.BAD_FRAMES_MARK}, never drawn; first: shard {shard} record 1 "
            f"video {CORPUS.video_id(1)}") in err, err


def test_stop_ends_the_input_naming_them(shard):
    ds = supervised.classification_dataset([shard], SMALL, ["a", "b"], modality="vision",
                                           training=False, batch_size=4, on_damage="stop")
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        list(ds)
    assert f"record 1 video {CORPUS.video_id(1)}" in str(sampling.bad_frames_error(caught.value))


def test_a_sound_record_picks_as_before():
    """With every frame whole, the pick is the one the baselines always made: the middle
    frame for evaluation, a uniform index from the same seed for training."""
    example = {"frames": tf.constant([b"\xff\xd8\xff" + bytes([i]) * 8 + b"\xff\xd9"
                                      for i in range(7)])}
    for training in (False, True):
        for s in range(5):
            seed = tf.constant([s, 3], tf.int64)
            want = (tf.random.stateless_uniform([], seed, 0, 7, dtype=tf.int64) if training
                    else 3)
            got = supervised._pick_frame(example, seed, training)
            assert got.numpy() == example["frames"].numpy()[int(want)]
    assert np.all(sampling.bad_frames(example["frames"]).numpy() == 0)
