"""The training stream (`l3.pairs.stream`): a pure function of (seed, position).

A stream rebuilt from any batch's position yields exactly what the
uninterrupted stream yields next (blocks, epoch seams, damaged shards
included); the position is a few hundred bytes; positions of another stream
are refused; frames that are not JPEG are never drawn, counted and named.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from l3.core.presets import SMALL
from l3.pairs import options as options_lib
from l3.pairs import stream as stream_lib
from tests.fixtures.records import SyntheticCorpus, truncated_jpeg, write_with_bad_frames

CORPUS = SyntheticCorpus(num_videos=10, seconds=2.0, fps=4.0, frame_size=(72, 96), seed=3)
OPTIONS = options_lib.PipelineOptions(batch_size=4, seed=5, pairs_per_video=3, open_videos=5,
                                      cycle_length=2)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return CORPUS.write(str(tmp_path_factory.mktemp("stream")), num_shards=3)


def _take(ds, n):
    it = iter(ds)
    return [next(it) for _ in range(n)]


def _same(a, b) -> bool:
    return all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a[:3], b[:3]))


def test_resuming_from_any_position_gives_the_same_batches(files):
    """Cuts inside a block, at block seams and past epoch seams (10 records x 3 draws
    = 30 draws an epoch, 7 batches of 4): the rebuilt stream equals the rest."""
    stream = stream_lib.stream_for(files, SMALL, OPTIONS)
    batches = _take(stream.dataset(), 24)
    epochs = set()
    for cut in (1, 2, 5, 8, 15, 19):
        position = stream_lib.StreamPosition.from_vector(batches[cut - 1][-1]["position"].numpy())
        epochs.add(position.epoch)
        again = _take(stream.dataset(position), 4)
        assert all(_same(a, b) for a, b in zip(again, batches[cut:cut + 4])), cut
    assert epochs >= {0, 1, 2}
    # A few hundred bytes: 6 + 3 x lanes int64.
    assert batches[0][-1]["position"].shape == (6 + 3 * stream.num_lanes,)


def test_the_stream_is_a_function_of_the_seed(files):
    a = _take(stream_lib.stream_for(files, SMALL, OPTIONS).dataset(), 3)
    b = _take(stream_lib.stream_for(files, SMALL, OPTIONS).dataset(), 3)
    c = _take(stream_lib.stream_for(
        files, SMALL, options_lib.PipelineOptions(**{**OPTIONS.__dict__, "seed": 6})).dataset(), 3)
    assert all(_same(x, y) for x, y in zip(a, b))
    assert not all(_same(x, y) for x, y in zip(a, c))


def test_a_position_of_another_stream_is_refused(files, tmp_path):
    stream = stream_lib.stream_for(files, SMALL, OPTIONS)
    position = stream.start()
    assert stream.accepts(position)
    other = stream_lib.stream_for(files[:2], SMALL, OPTIONS)       # other files
    assert not other.accepts(position)
    with pytest.raises(ValueError, match="not one of this stream's"):
        other.dataset(position)
    reseeded = stream_lib.stream_for(
        files, SMALL, options_lib.PipelineOptions(**{**OPTIONS.__dict__, "seed": 9}))
    assert not reseeded.accepts(position)


def test_a_block_deals_each_record_once_per_round(files):
    """Blocks of 5 records, K = 3: the first 15 draws are 3 rounds, each of the 5
    records once (so a batch inside a round never holds two draws of one video)."""
    options = options_lib.PipelineOptions(**{**OPTIONS.__dict__, "batch_size": 5})
    stream = stream_lib.stream_for(files, SMALL, options)
    batches = _take(stream.dataset(include_metadata=True), 3)
    rounds = [list(b[3]["frame_video_id"].numpy()) for b in batches]
    for ids in rounds:
        assert len(set(ids)) == 5, ids
    assert set(rounds[0]) == set(rounds[1]) == set(rounds[2])
    assert rounds[0] != rounds[1] or rounds[1] != rounds[2]  # each round reshuffled


def test_lanes_mix_shards(files):
    """Two lanes read two shards in turn: a block's records come from both."""
    stream = stream_lib.stream_for(files, SMALL, OPTIONS)
    shard_of = {CORPUS.video_id(i): i % 3 for i in range(CORPUS.num_videos)}
    batch = _take(stream.dataset(include_metadata=True), 1)[0]
    assert len({shard_of[v.decode()] for v in batch[3]["frame_video_id"].numpy()}) >= 2


def _write_with_bad_frames(path: str, bad_video: int):
    """The corpus in one shard, video `bad_video` with every other frame damaged: not a
    JPEG (frames 0, 4, ...) or a JPEG cut short (2, 6, ...: its SOI marker is there)."""
    damage = {j: (lambda jpeg, j=j: b"PNG? no: not a JPEG " + bytes(j)) if j % 4 == 0
              else truncated_jpeg for j in range(0, len(CORPUS.frame_times(bad_video)), 2)}
    write_with_bad_frames(CORPUS, path, {bad_video: damage})


def test_frames_that_are_not_jpeg_are_never_drawn_and_are_reported(tmp_path, capfd):
    path = str(tmp_path / "train-00000-of-00001.tfrecord")
    _write_with_bad_frames(path, bad_video=4)
    stream = stream_lib.stream_for([path], SMALL, OPTIONS)
    batches = _take(stream.dataset(include_metadata=True), 16)   # > 2 epochs
    bad = CORPUS.video_id(4).encode()
    drawn = [int(k) for b in batches for v, k in zip(b[3]["frame_video_id"].numpy(),
                                                      b[3]["frame_index"].numpy()) if v == bad]
    assert drawn and all(k % 2 == 1 for k in drawn)  # only its good frames
    frames = len(CORPUS.frame_times(4))
    assert sum(int(b[-1]["bad_frames"]) for b in batches) >= (frames + 1) // 2 * 2
    err = capfd.readouterr().err
    assert f"shard {path} record 4 video {CORPUS.video_id(4)}" in err
    stopping = stream_lib.stream_for(
        [path], SMALL, options_lib.PipelineOptions(**{**OPTIONS.__dict__, "on_damaged_shard": "stop"}))
    with pytest.raises(tf.errors.InvalidArgumentError, match="not JPEG"):
        _take(stopping.dataset(), 8)


def test_resuming_past_a_damaged_shard(files, tmp_path):
    """A shard cut short (skip policy): the stream goes on, and a resume from a
    position past the damage equals the uninterrupted stream."""
    folder = tmp_path / "damaged"
    os.makedirs(folder)
    copies = []
    for f in files:
        data = open(f, "rb").read()
        target = folder / os.path.basename(f)
        target.write_bytes(data[: len(data) * 2 // 3] if f == files[1] else data)
        copies.append(str(target))
    stream = stream_lib.stream_for(copies, SMALL, OPTIONS)
    batches = _take(stream.dataset(), 16)
    position = stream_lib.StreamPosition.from_vector(batches[11][-1]["position"].numpy())
    assert position.epoch >= 1
    again = _take(stream.dataset(position), 4)
    assert all(_same(a, b) for a, b in zip(again, batches[12:16]))
