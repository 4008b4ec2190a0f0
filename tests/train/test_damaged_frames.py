"""l3-train on a record whose CRC is valid but some of whose frames are not JPEG or were
cut short (issue 24, first row of its table): with the default --on_damaged_shard=skip
the run completes, never draws them, names the first record and counts them in its
summary; with stop it ends with one line naming the shard, record and video."""

import pytest

from l3.core import errors
from l3.pairs import sampling
from l3.train import loop as train
from tests.fixtures.records import SyntheticCorpus, truncated_jpeg, write_with_bad_frames

CORPUS = SyntheticCorpus(num_videos=6, seconds=2.0, fps=4.0, frame_size=(72, 96), seed=11,
                         learnable=True, labels=["a", "b"])
BAD_VIDEO = 3


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("frames") / "train-00000-of-00001.tfrecord")
    n = len(CORPUS.frame_times(BAD_VIDEO))
    damage = {k: truncated_jpeg if k % 2 else (lambda jpeg: b"not a jpeg") for k in range(n - 1)}
    return write_with_bad_frames(CORPUS, path, {BAD_VIDEO: damage})


def _config(shard, model_dir, **kw):
    return train.TrainConfig(train_pattern=shard, model_dir=str(model_dir), preset="small",
                             global_batch_size=8, train_steps=4, log_every=2,
                             strategy="one_device", checkpoint_every=1000, eval_every=1000,
                             **kw)


def test_skip_completes_and_counts_them(shard, tmp_path, capfd):
    summary = train.train(_config(shard, tmp_path / "run"))
    assert summary["step"] == 4
    n = len(CORPUS.frame_times(BAD_VIDEO)) - 1
    assert summary["bad_frames"] >= n and summary["bad_frames"] % n == 0, summary["bad_frames"]
    err = capfd.readouterr().err
    assert (f"{sampling.BAD_FRAMES_MARK} in this block of records, never drawn; first: shard "
            f"{shard} record {BAD_VIDEO} video {CORPUS.video_id(BAD_VIDEO)}") in err


def test_stop_is_one_line_naming_the_record(shard, tmp_path):
    with pytest.raises(errors.DamagedShardError) as caught:
        train.train(_config(shard, tmp_path / "run", on_damaged_shard="stop"))
    message = str(caught.value)
    assert "\n" not in message
    assert f"shard {shard} record {BAD_VIDEO} video {CORPUS.video_id(BAD_VIDEO)}" in message
