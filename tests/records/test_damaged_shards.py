"""Damaged shards (issue 17, item 1): the verifier, and the pipeline's skip / stop.

Shards are written by `tests/fixtures/records.py` (the real schema); damage is
done to the bytes on disk: a shard truncated to half its size (an interrupted
copy) and one byte flipped inside a record's data (bit rot).
"""

import json
import os
import re
import subprocess
import sys

import google_crc32c
import pytest
import tensorflow as tf

from l3.core import errors
from l3.records import framing, shard_reader
from l3.pairs import pipeline as pairs
from l3.core.presets import SMALL
from l3_tfrecords import shards as shards_lib
from tests.fixtures.records import write_synthetic_shards

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VIDEOS_PER_SHARD = 4


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)


def _offsets(path):
    """Record start offsets, from TFRecord framing read independently (struct + crc)."""
    return [offset for offset, _ in framing.iter_records(path)]


@pytest.fixture()
def damaged(tmp_path):
    """4 shards of 4 videos with builder sidecars: sound, truncated, flipped, and one
    whose sidecar claims more records than it holds. Returns (folder, {kind: path})."""
    paths = write_synthetic_shards(str(tmp_path), num_videos=4 * VIDEOS_PER_SHARD, seconds=2.0,
                                   fps=4.0, num_shards=4)
    for path in paths:
        folder, name = os.path.split(path)
        sidecar = {"shard": name, "videos_written": VIDEOS_PER_SHARD,
                   "bytes": os.path.getsize(path), "count": 4}
        os.makedirs(os.path.join(folder, shards_lib.STATS_DIR), exist_ok=True)
        with open(shards_lib.stats_path(folder, name), "w") as f:
            json.dump(sidecar, f)
    sound, truncated, flipped, miscounted = paths
    with open(truncated, "r+b") as f:
        f.truncate(os.path.getsize(truncated) // 2)
    record2 = _offsets(flipped)[2]
    with open(flipped, "r+b") as f:
        f.seek(record2 + framing.HEADER + 100)  # inside the data of record 2
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x10]))
    with open(shards_lib.stats_path(*os.path.split(miscounted)), "w") as f:
        json.dump({"videos_written": VIDEOS_PER_SHARD + 1, "bytes": os.path.getsize(miscounted)}, f)
    return str(tmp_path), dict(sound=sound, truncated=truncated, flipped=flipped,
                               miscounted=miscounted, flipped_at=record2)


def test_masked_crc32c_matches_the_standard_and_tensorflow(tmp_path):
    assert google_crc32c.value(b"123456789") == 0xE3069283  # RFC 3720 B.4 check value
    assert framing.masked_crc32c(b"") == 0xA282EAD8  # crc32c("") = 0, rotated, plus delta
    path = str(tmp_path / "x.tfrecord")
    data = [os.urandom(n) for n in (0, 1, 100, 70_000)]
    with tf.io.TFRecordWriter(path) as w:
        for d in data:
            w.write(d)
    assert [d for _, d in framing.iter_records(path)] == data  # TensorFlow's CRCs agree


def test_verifier_lists_bad_shards_by_name(damaged, tmp_path):
    folder, kind = damaged
    gone = os.path.join(folder, shards_lib.STATS_DIR, "train-00009-of-00010.tfrecord.json")
    with open(gone, "w") as f:
        json.dump({"videos_written": 1}, f)
    # One shard that frames fine but whose record is not an Example.
    junk = os.path.join(folder, "train-00008-of-00010.tfrecord")
    with tf.io.TFRecordWriter(junk) as w:
        w.write(b"\xff\xff not a tf.train.Example")
    report_json = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "l3_tfrecords.verify", "--noprogress",
                           f"--data_pattern={folder}/train-*.tfrecord",
                           f"--output_json={report_json}"],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    bad = dict(re.findall(r"^BAD (\S+): (.*)$", proc.stdout, re.M))
    half = os.path.getsize(kind["truncated"])
    assert set(bad) == {kind["truncated"], kind["flipped"], kind["miscounted"], junk,
                        os.path.join(folder, "train-00009-of-00010.tfrecord")}, proc.stdout
    assert "truncated record" in bad[kind["truncated"]]
    assert f"data CRC mismatch (corrupted record) at byte {kind['flipped_at']} (record 2" \
        in bad[kind["flipped"]]
    assert "2 records but its sidecar says 4" in bad[kind["flipped"]]
    assert "records but its sidecar says 4" in bad[kind["truncated"]]
    assert f"{half} bytes but its sidecar says" in bad[kind["truncated"]]
    assert "4 records but its sidecar says 5" in bad[kind["miscounted"]]
    assert "does not parse against the schema" in bad[junk]
    assert "missing" in bad[os.path.join(folder, "train-00009-of-00010.tfrecord")]
    assert "1 of 6 shards sound, 5 bad" in proc.stdout
    assert json.loads(report_json.read_text())["bad"] == sorted(bad)

    proc = subprocess.run([sys.executable, "-m", "l3_tfrecords.verify", "--noprogress",
                           f"--data_pattern={kind['sound']}"],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0 and "1 of 1 shards sound, 0 bad; 4 records read" in proc.stdout


def _eval_video_ids(files, on_damage):
    options = pairs.PipelineOptions(batch_size=4, include_metadata=True,
                                    on_damaged_shard=on_damage)
    ds = pairs.make_dataset(files, SMALL, training=False, options=options)
    return {v.decode() for *_, meta in ds.as_numpy_iterator() for v in meta["frame_video_id"]}


@pytest.mark.parametrize("which", ["truncated", "flipped"])
def test_skip_keeps_what_precedes_the_damage_and_names_it(damaged, which, capfd):
    folder, kind = damaged
    path = kind[which]
    kept = len(_offsets_until_damage(path))
    ids = _eval_video_ids([kind["sound"], path], "skip")
    err = capfd.readouterr().err
    at = _damage_offset(path)
    assert (f"WARNING: damaged shard {path} at byte {at} of {os.path.getsize(path)}: kept its "
            f"first {kept} records") in err, err
    # Video i is in shard i % 4: the sound shard 0 gives 0, 4, 8, 12; the damaged one its
    # first `kept` videos and nothing after the damage.
    index = 1 if which == "truncated" else 2
    expected = {f"synth{i:05d}" for i in range(0, 16, 4)} | {
        f"synth{index + 4 * k:05d}" for k in range(kept)}
    assert ids == expected


def _offsets_until_damage(path):
    out = []
    try:
        for offset, _ in framing.iter_records(path):
            out.append(offset)
    except framing.FramingError:
        pass
    return out


def _damage_offset(path):
    try:
        list(framing.iter_records(path))
    except framing.FramingError as e:
        return e.offset
    raise AssertionError(f"{path} is not damaged")


@pytest.mark.parametrize("which", ["truncated", "flipped"])
def test_stop_names_the_shard_and_byte_offset(damaged, which):
    folder, kind = damaged
    files = [kind["sound"], kind[which]]
    with pytest.raises(tf.errors.DataLossError) as info:
        _eval_video_ids(files, "stop")
    error = shard_reader.damaged_shard_error(files, info.value)
    assert isinstance(error, errors.UsageError)
    assert str(error).startswith(f"damaged shard {kind[which]}: ")
    assert f"at byte {_damage_offset(kind[which])}" in str(error) and "\n" not in str(error)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_l3_train_on_a_damaged_shard(damaged, tmp_path):
    """Stop: one line naming the shard and offset, exit 2. Skip (the default): trains on,
    warning once per pass over the damaged shard; a resumed run warns the same way."""
    folder, kind = damaged
    pattern = os.path.join(folder, "train-0000[01]-*.tfrecord")  # sound + truncated
    base = [sys.executable, "-m", "l3.bin.train", f"--train_pattern={pattern}", "--preset=small",
            "--global_batch_size=4", "--strategy=one_device", "--log_every=1", "--eval_every=1000"]
    proc = subprocess.run(base + [f"--model_dir={tmp_path}/stop", "--train_steps=4",
                                  "--on_damaged_shard=stop"],
                          capture_output=True, text=True, env=_env(), timeout=600)
    lines = [l for l in proc.stderr.splitlines() if l.startswith("l3-train: error:")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f"damaged shard {kind['truncated']}: truncated record" in lines[0]
    assert f"at byte {_damage_offset(kind['truncated'])}" in lines[0]

    for steps in (4, 8):  # the second run resumes from the first's checkpoint
        proc = subprocess.run(base + [f"--model_dir={tmp_path}/skip", f"--train_steps={steps}",
                                      "--checkpoint_every=4"],
                              capture_output=True, text=True, env=_env(), timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"WARNING: damaged shard {kind['truncated']} at byte" in proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1])["step"] == steps


def test_deep_verify_names_every_frame_that_does_not_decode(tmp_path):
    """--deep decodes every frame with TensorFlow's decoder: a truncated JPEG (SOI marker,
    no end) and bytes that are not a JPEG are named by record, video and frame; the
    plain check (framing, CRC, schema) finds the shard sound, as it is."""
    from l3_tfrecords import integrity
    from tests.fixtures.records import SyntheticCorpus, truncated_jpeg, write_with_bad_frames

    corpus = SyntheticCorpus(num_videos=3, seconds=2.0)
    path = write_with_bad_frames(corpus, str(tmp_path / "train-00000-of-00001.tfrecord"),
                                 {1: {1: truncated_jpeg, 3: lambda jpeg: b"not a jpeg"}})
    assert integrity.verify_shard(path).problems == ["no sidecar ("
                                                     + shards_lib.stats_path(str(tmp_path),
                                                                             os.path.basename(path))
                                                     + "): the build of this shard did not finish"]
    (problem, _) = integrity.verify_shard(path, deep=True).problems
    assert problem.startswith(f"record 1 (byte {_offsets(path)[1]}) video "
                              f"{corpus.video_id(1)!r}: 2 of {len(corpus.frame_times(1))} frame(s) "
                              "do not decode as JPEG: frame 1 ("), problem
    assert "), 3 (" in problem
    proc = subprocess.run([sys.executable, "-m", "l3_tfrecords.verify", "--noprogress", "--deep",
                           f"--data_pattern={path}"],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"BAD {path}: record 1 (byte" in proc.stdout, proc.stdout
    assert "0 of 1 shards sound, 1 bad" in proc.stdout, proc.stdout


def test_local_shards_are_read_unbuffered_and_urls_with_tensorflows_buffer():
    """Unbuffered reads put a local record straight into its string; on a URL they would
    cost three requests a record, so there the reader keeps TensorFlow's 256 KB buffer."""
    sizes = {p: int(shard_reader.read_buffer(tf.constant(p)))
             for p in ("/data/train-00000.tfrecord", "shards/a.tfrecord",
                       "gs://bucket/train-00000.tfrecord", "s3://b/a.tfrecord",
                       "hdfs://host:9000/a.tfrecord")}
    assert sizes == {"/data/train-00000.tfrecord": 0, "shards/a.tfrecord": 0,
                     "gs://bucket/train-00000.tfrecord": 256 * 1024,
                     "s3://b/a.tfrecord": 256 * 1024, "hdfs://host:9000/a.tfrecord": 256 * 1024}
