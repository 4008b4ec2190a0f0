"""The builder never writes a frame it has not decoded back once (issue 24.1).

A JPEG encoder that returns damaged bytes for some frames (planted by
replacing `workers.encode_jpeg`) must cost those frames only: the record
keeps the others with their own times, the build's warnings name each
dropped frame, and a video none of whose frames decode back is skipped with
reason `undecodable_frames`. The reference decoder is TensorFlow's (the one
training uses), not the builder's PIL check.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from l3.records import schema as records
from l3_tfrecords import builder, workers
from tests.fixtures import media as mf

FPS = 5.0


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("decode_back")
    mf.make_video(str(root / "v.mp4"), seconds=2.0, fps=25.0, size=(64, 48), sample_rate=48000)
    return str(root)


def _build(root, out, monkeypatch, damage):
    """Builds `root` with frame i's JPEG replaced by damage(i, jpeg) (None: unchanged)."""
    real = workers.encode_jpeg
    count = {"i": 0}

    def encode(image, quality):
        jpeg = real(image, quality)
        i, count["i"] = count["i"], count["i"] + 1
        bad = damage(i, jpeg)
        return jpeg if bad is None else bad

    monkeypatch.setattr(workers, "encode_jpeg", encode)
    config = builder.BuildConfig(output_dir=str(out), workers=0, progress=False, num_shards=1,
                                 fps=FPS)
    return builder.build_from_input(root, config)


def test_keep_decodable_names_each_dropped_frame():
    frames = [np.full((12, 16, 3), 40 * i, np.uint8) for i in range(4)]
    jpegs = [workers.encode_jpeg(f, 90) for f in frames]
    jpegs[1] = jpegs[1][: len(jpegs[1]) // 2]          # truncated: SOI marker, no end
    jpegs[3] = b"not a jpeg at all"
    kept, times, warnings = workers.keep_decodable(jpegs, frames, [0.0, 0.2, 0.4, 0.6])
    assert kept == [jpegs[0], jpegs[2]] and times == [0.0, 0.4]
    assert [w.split(" at ")[0] for w in warnings] == ["frame 1", "frame 3"], warnings
    assert "0.200 s dropped" in warnings[0] and "0.600 s dropped" in warnings[1]
    # An image of another size is not "decoded back" either.
    other = workers.encode_jpeg(np.zeros((8, 8, 3), np.uint8), 90)
    assert workers.decodes_back(other, (12, 16, 3)).startswith("decodes to 8x8")


def test_builder_drops_frames_that_do_not_decode_back(video_folder, tmp_path, monkeypatch):
    clean = _build(video_folder, tmp_path / "clean", monkeypatch, lambda i, jpeg: None)
    assert clean["summary"]["videos_written"] == 1
    damaged_at = {1, 4}
    result = _build(video_folder, tmp_path / "out", monkeypatch,
                    lambda i, jpeg: jpeg[: len(jpeg) // 3] if i in damaged_at else None)
    assert result["summary"]["videos_written"] == 1
    (ref,) = records.read_examples(sorted(map(str, (tmp_path / "clean").glob("train-*.tfrecord"))))
    (rec,) = records.read_examples(sorted(map(str, (tmp_path / "out").glob("train-*.tfrecord"))))
    keep = [i for i in range(len(ref["frames"])) if i not in damaged_at]
    assert len(ref["frames"]) >= 8
    np.testing.assert_array_equal(rec["frame_times"], np.asarray(ref["frame_times"])[keep])
    assert list(rec["frames"]) == [ref["frames"][i] for i in keep]
    for jpeg in rec["frames"]:                      # TensorFlow decodes every written frame
        tf.io.decode_jpeg(jpeg, channels=3)
    np.testing.assert_array_equal(rec["audio"], ref["audio"])
    with open(tmp_path / "out" / "warnings.jsonl") as f:
        (row,) = [json.loads(line) for line in f]
    dropped = [w for w in row["warnings"] if "does not decode back" in w]
    assert [w.split(" at ")[0] for w in dropped] == ["frame 1", "frame 4"], row


def test_a_video_with_no_decodable_frame_is_skipped_with_its_reason(video_folder, tmp_path,
                                                                    monkeypatch):
    result = _build(video_folder, tmp_path / "out", monkeypatch, lambda i, jpeg: b"\xff\xd8junk")
    summary = result["summary"]
    assert summary["videos_written"] == 0
    assert summary["skipped_by_reason"] == {"undecodable_frames": 1}
    with open(tmp_path / "out" / "skipped.jsonl") as f:
        (row,) = [json.loads(line) for line in f]
    assert row["reason"] == "undecodable_frames" and "frame 0 at 0.000 s dropped" in row["message"]
