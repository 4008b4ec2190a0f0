"""The fixed evaluation pairs meet frames that are not whole JPEGs (issue 24.1).

A record whose CRC is valid but some of whose frames are not JPEG or were cut
short: with "skip" those frames are never drawn and one warning names the
shard, record and video; with "stop" (l3-eval-avc's default) the evaluation
ends with one line naming them, not a decoder traceback.
"""

import pytest
import tensorflow as tf

from l3.core import errors
from l3.core.presets import SMALL
from l3.pairs import evaluation, sampling
from tests.fixtures.records import SyntheticCorpus, truncated_jpeg, write_with_bad_frames

CORPUS = SyntheticCorpus(num_videos=6, seconds=2.0, fps=4.0, frame_size=(72, 96), seed=5)
BAD_VIDEO = 2


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    """One shard; video 2's frames all damaged but frame 5 (not JPEG or cut short, in turn)."""
    path = str(tmp_path_factory.mktemp("bad_frames") / "train-00000-of-00001.tfrecord")
    n = len(CORPUS.frame_times(BAD_VIDEO))
    damage = {k: truncated_jpeg if k % 2 else (lambda jpeg: b"GIF89a not a jpeg")
              for k in range(n) if k != 5}
    return write_with_bad_frames(CORPUS, path, {BAD_VIDEO: damage})


def test_skip_never_draws_them_and_names_the_record(shard, capfd):
    ds = evaluation.evaluation_pairs(shard, SMALL, num_pairs=48, batch_size=8,
                                     include_metadata=True, on_damaged_shard="skip")
    drawn = [(v.decode(), int(k)) for *_, meta in ds.as_numpy_iterator()
             for v, k in zip(meta["frame_video_id"], meta["frame_index"])]
    assert len(drawn) == 48
    bad = [k for v, k in drawn if v == CORPUS.video_id(BAD_VIDEO)]
    assert bad and set(bad) == {5}, bad      # its one whole frame, every pass
    err = capfd.readouterr().err
    n = len(CORPUS.frame_times(BAD_VIDEO))
    assert (f"WARNING: {n - 1} {sampling.BAD_FRAMES_MARK}, never drawn; first: shard {shard} "
            f"record {BAD_VIDEO} video {CORPUS.video_id(BAD_VIDEO)}") in err, err


def test_stop_ends_with_one_line_naming_them(shard):
    ds = evaluation.evaluation_pairs(shard, SMALL, num_pairs=48, batch_size=8)
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        list(ds)
    error = sampling.bad_frames_error(caught.value)
    assert isinstance(error, errors.DamagedShardError)
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"damaged frames: {len(CORPUS.frame_times(BAD_VIDEO)) - 1} "
                              f"{sampling.BAD_FRAMES_MARK}; first: shard {shard} record "
                              f"{BAD_VIDEO} video {CORPUS.video_id(BAD_VIDEO)} ("), message
    assert sampling.bad_frames_error(ValueError("something else")) is None
