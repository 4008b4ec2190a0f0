"""The TFRecord builder: inputs, records' content and alignment, skips, sharding,
resume after a kill, exit status; and the Kinetics-Sounds class table."""

import glob
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from l3.core import kinetics_sounds
from l3 import media
from l3.records import schema as records
from l3_tfrecords import build as build_main
from l3_tfrecords import builder, inputs, shards, workers
from tests.fixtures import media as mf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONTENT_KEYS = ("videos_seen", "videos_written", "videos_skipped", "skipped_by_reason",
                "audio_seconds", "frames", "bytes")


def _config(out, **kw):
    kw.setdefault("workers", 0)
    kw.setdefault("progress", False)
    return builder.BuildConfig(output_dir=str(out), **kw)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """<label>/<video> folder: 5 good videos (several containers/rates) and every bad kind."""
    root = tmp_path_factory.mktemp("corpus")
    good = {}
    specs = [("cats/a.mp4", 44100, 2), ("cats/b.mkv", 22050, 1), ("dogs/c.webm", 48000, 2),
             ("dogs/d.avi", 32000, 1), ("birds/e.mov", 44100, 6)]
    for vid, (rel, rate, channels) in enumerate(specs):
        os.makedirs(root / os.path.dirname(rel), exist_ok=True)
        mf.make_video(str(root / rel), seconds=2.0, video_id=vid, sample_rate=rate, channels=channels)
        good[rel] = vid
    bad = mf.make_bad_files(str(root / "junk"))
    mf.make_video(str(root / "dogs" / "src.mp4"), seconds=4.0, video_id=7)
    mf.corrupt_middle(str(root / "dogs" / "src.mp4"), str(root / "dogs" / "damaged.mp4"), 0.6)
    os.remove(root / "dogs" / "src.mp4")
    good["dogs/damaged.mp4"] = 7
    (root / "notes.txt").write_text("not a video extension: not enumerated")
    return {"root": str(root), "good": good, "bad": {f"junk/{k}": v for k, v in bad.items()}}


def _decode_jpeg(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_folder_build_records_summary_and_skips(corpus, tmp_path):
    out = tmp_path / "out"
    result = builder.build_from_input(corpus["root"], _config(out, num_shards=2),
                                      label_from_parent_dir=True)
    summary = result["summary"]
    n_good, n_bad = len(corpus["good"]), len(corpus["bad"])
    assert summary["videos_seen"] == n_good + n_bad
    assert summary["videos_written"] == n_good
    expected_reasons = {}
    for reason in corpus["bad"].values():
        expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
    assert summary["skipped_by_reason"] == expected_reasons
    assert summary["complete"] and summary["shards"] == 2
    assert result["this_run"]["videos_written"] == n_good
    with open(out / "summary.json") as f:
        assert json.load(f)["videos_written"] == n_good
    with open(out / "skipped.jsonl") as f:
        skipped = {row["video_id"]: row for row in map(json.loads, f)}
    assert {k: v["reason"] for k, v in skipped.items()} == corpus["bad"]
    assert all(row["message"] and row["path"] for row in skipped.values())
    with open(out / "warnings.jsonl") as f:
        warned = [json.loads(line) for line in f]
    assert [w["video_id"] for w in warned] == ["dogs/damaged.mp4"]
    assert "to decoding errors" in warned[0]["warnings"][0]

    shards = sorted(glob.glob(str(out / "train-*.tfrecord")))
    assert [os.path.basename(s) for s in shards] == [records.shard_name("train", i, 2) for i in range(2)]
    assert summary["bytes"] == sum(os.path.getsize(s) for s in shards)
    recs = list(records.read_examples(shards))
    assert len(recs) == n_good
    frames_total, audio_total = 0, 0.0
    for rec in recs:
        video_id = rec["video_id"].decode()
        assert rec["label"].decode() == os.path.dirname(video_id)
        assert rec["split"].decode() == "train"
        assert rec["source"].decode() == os.path.join(corpus["root"], video_id)
        vid = corpus["good"][video_id]
        times = rec["frame_times"]
        frames_total += len(times)
        audio_total += len(rec["audio"]) / 48000
        # Frame content matches its timestamp (source frames at i / 25 s) and video.
        for jpeg, t in zip(rec["frames"], times):
            image = _decode_jpeg(jpeg)
            assert min(image.shape[:2]) == 256
            index, colour_vid = mf.color_index(mf.frame_color(image))
            assert colour_vid == vid
            assert abs(index / 25 - t) < 1e-3, (video_id, index, t)
        # Audio is the decoder's audio as int16, tone pitch = video id, bursts on whole seconds.
        decoded = media.decode_video(os.path.join(corpus["root"], video_id), min_audio_seconds=1.0)
        np.testing.assert_allclose(rec["audio"], decoded.audio, atol=1.0 / 32768)
        assert rec["audio_start"] == pytest.approx(decoded.audio_start)
        assert rec["sample_rate"] == 48000
        assert abs(mf.dominant_frequency(rec["audio"][:24000], 48000) - mf.pitch_for(vid)) < 5
        onsets = rec["audio_start"] + mf.burst_onsets(rec["audio"], 48000)
        assert np.min(np.abs(onsets - 1.0)) < 0.005
    assert summary["frames"] == frames_total
    assert summary["audio_seconds"] == pytest.approx(audio_total, abs=1e-2)


def test_sharded_cluster_build_equals_single_build(corpus, tmp_path):
    single = tmp_path / "single"
    builder.build_from_input(corpus["root"], _config(single, num_shards=3))
    cluster = tmp_path / "cluster"
    for index in (2, 0, 1):  # any order, any process
        workers = 2 if index == 1 else 0  # the multiprocess path gives the same bytes
        result = builder.build_from_input(
            corpus["root"], _config(cluster, num_shards=3, shard_index=index, workers=workers))
        assert result["this_run"]["shards"] == 1
    names = sorted(os.path.basename(p) for p in glob.glob(str(single / "*.tfrecord")))
    assert len(names) == 3
    for name in names:
        with open(single / name, "rb") as a, open(cluster / name, "rb") as b:
            assert a.read() == b.read(), name
    with open(single / "summary.json") as a, open(cluster / "summary.json") as b:
        s1, s2 = json.load(a), json.load(b)
    assert {k: s1[k] for k in CONTENT_KEYS} == {k: s2[k] for k in CONTENT_KEYS}
    with open(single / "skipped.jsonl") as a, open(cluster / "skipped.jsonl") as b:
        assert a.read() == b.read()
    assert s2["complete"]


def test_partial_cluster_summary_lists_missing_shards(corpus, tmp_path):
    out = tmp_path / "partial"
    builder.build_from_input(corpus["root"], _config(out, num_shards=3, shard_index=1))
    summary = shards.summarize(str(out), 3)
    assert not summary["complete"]
    assert summary["splits"]["train"]["shards_missing"] == [0, 2]


def test_resume_skips_finished_shards_and_checks_settings(corpus, tmp_path):
    out = tmp_path / "resume"
    builder.build_from_input(corpus["root"], _config(out, num_shards=2))
    first = records.shard_name("train", 0, 2)
    mtime = os.path.getmtime(out / first)
    result = builder.build_from_input(corpus["root"], _config(out, num_shards=2))
    assert result["this_run"]["shards_resumed"] == 2 and result["this_run"]["shards_built"] == 0
    assert result["this_run"]["videos_written"] == len(corpus["good"])
    assert os.path.getmtime(out / first) == mtime
    # A run killed after renaming shard 1 but before its sidecar, with a stale temp file.
    second = records.shard_name("train", 1, 2)
    with open(out / second, "rb") as f:
        good_bytes = f.read()
    os.remove(out / shards.STATS_DIR / (second + ".json"))
    with open(out / second, "wb") as f:
        f.write(good_bytes[:100])
    (out / f".{second}.tmp-12345").write_bytes(b"partial")
    result = builder.build_from_input(corpus["root"], _config(out, num_shards=2))
    assert result["this_run"]["shards_built"] == 1
    with open(out / second, "rb") as f:
        assert f.read() == good_bytes
    assert not glob.glob(str(out / ".*tmp*"))
    assert os.path.getmtime(out / first) == mtime
    with pytest.raises(ValueError, match="--overwrite"):
        builder.build_from_input(corpus["root"], _config(out, num_shards=2, fps=2.0))
    result = builder.build_from_input(corpus["root"], _config(out, num_shards=2, fps=2.0,
                                                              overwrite=True))
    assert result["this_run"]["shards_built"] == 2


def _run_cli(*args, **kw):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, "-m", "l3_tfrecords.build", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


@pytest.mark.slow
def test_kill_mid_build_then_rerun_gives_the_same_shards(tmp_path):
    videos = tmp_path / "videos"
    os.makedirs(videos)
    for i in range(9):
        mf.make_video(str(videos / f"v{i}.mp4"), seconds=4.0, size=(320, 240), video_id=i,
                      video_options={"preset": "ultrafast"})
    args = [f"--input={videos}", "--num_shards=3", "--workers=0", "--noprogress"]
    reference = tmp_path / "reference"
    proc = _run_cli(*args, f"--output_dir={reference}")
    assert proc.wait(timeout=300) == 0, proc.stdout.read().decode()

    out = tmp_path / "killed"
    proc = _run_cli(*args, f"--output_dir={out}")
    deadline = time.time() + 300
    while not glob.glob(str(out / shards.STATS_DIR / "*.json")) and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = glob.glob(str(out / shards.STATS_DIR / "*.json"))
    assert 1 <= len(finished) < 3, "the build was not killed mid-way"
    done = os.path.basename(finished[0])[: -len(".json")]
    mtime = os.path.getmtime(out / done)

    proc = _run_cli(*args, f"--output_dir={out}")
    output = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, output
    assert os.path.getmtime(out / done) == mtime  # not redone
    assert not glob.glob(str(out / ".*tmp*"))  # the killed run's temp file is gone
    for path in sorted(glob.glob(str(reference / "*.tfrecord"))):
        with open(path, "rb") as a, open(out / os.path.basename(path), "rb") as b:
            assert a.read() == b.read()


def test_exit_status_says_whether_anything_was_written(corpus, tmp_path):
    from absl import flags
    bad_only = os.path.join(corpus["root"], "junk")
    argv = ["l3-build-tfrecords", f"--input={bad_only}", f"--output_dir={tmp_path / 'bad'}",
            "--workers=0", "--num_shards=1", "--noprogress"]
    flags.FLAGS.unparse_flags()
    flags.FLAGS(argv)
    try:
        assert build_main.main([]) == 1
        flags.FLAGS.unparse_flags()
        flags.FLAGS(argv[:1] + [f"--input={corpus['root']}", f"--output_dir={tmp_path / 'good'}",
                                "--workers=0", "--num_shards=1", "--noprogress"])
        assert build_main.main([]) == 0
    finally:
        flags.FLAGS.unparse_flags()


def test_crashing_or_hanging_worker_skips_only_that_video(corpus):
    path = os.path.join(corpus["root"], "cats/a.mp4")
    ids = ["a", "crash", "b", "hang", "c", "d"]
    items = [inputs.VideoItem(path=path, video_id=i) for i in ids]
    settings = _config("unused").content_settings()
    results = list(workers.map_videos(items, settings, workers=2, timeout=8.0,
                                      fn=mf.misbehaving_process_video))
    assert [r.item.video_id for r in results] == ids
    assert [r.reason if not r.ok else "ok" for r in results] == [
        "ok", "crashed", "ok", "timeout", "ok", "ok"]


def test_benchmark_runs_and_reports_every_stage(tmp_path):
    import importlib
    bench = importlib.import_module("benchmarks.bench_builder")
    result = bench.run_benchmark(1, 0, seconds=1.5, size=(160, 96), media_dir=str(tmp_path))
    assert result["videos_written"] == 1 and result["videos_per_second"] > 0
    assert set(result["stage_cpu_seconds"]) == set(bench.STAGES)
    assert result["machine"]["cpu_count"] >= 1
    assert "decoded seconds/s per core" in bench.format_table(result)


# ----------------------------------------------------------------------------
# Inputs.


def test_input_kinds_are_detected_and_sorted(corpus, tmp_path):
    root = corpus["root"]
    items = inputs.enumerate_videos(root, split="val", label_from_parent_dir=True)
    ids = [it.video_id for it in items]
    assert ids == sorted(ids) and "notes.txt" not in ids
    assert len(ids) == len(corpus["good"]) + len(corpus["bad"])
    assert {it.split for it in items} == {"val"}
    assert next(it for it in items if it.video_id == "cats/a.mp4").label == "cats"

    listing = tmp_path / "list.txt"
    listing.write_text("# videos\n\ndogs/c.webm\ncats/a.mp4\ncats/a.mp4\n" +
                       os.path.join(root, "birds/e.mov") + "\n")
    assert inputs.detect_kind(str(listing)) == "list"
    items = inputs.enumerate_videos(str(listing), video_root=root, label_from_parent_dir=True)
    assert [it.video_id for it in items] == sorted(
        ["dogs/c.webm", "cats/a.mp4", os.path.join(root, "birds/e.mov")])
    assert all(os.path.exists(it.path) for it in items)
    assert [it.label for it in items if it.video_id == "dogs/c.webm"] == ["dogs"]
    assert inputs.detect_kind(root) == "folder"


def test_kinetics_csv_paths_splits_labels_and_filter(tmp_path):
    root = tmp_path / "kinetics"
    rows = [("playing bagpipes", "abc", 10, 20, "train"), ("blowing out candles", "def", 0, 10, "val"),
            ("abseiling", "ghi", 5, 15, "train"), ("playing bagpipes", "jkl", 1, 11, "train")]
    for label, yid, start, end, split in rows[:3]:
        d = root / split / label
        os.makedirs(d, exist_ok=True)
        mf.make_video(str(d / f"{yid}_{start:06d}_{end:06d}.mp4"), seconds=1.2)
    csv_path = tmp_path / "k.csv"
    csv_path.write_text("label,youtube_id,time_start,time_end,split,is_cc\n" +
                        "".join(f'"{l}",{y},{s},{e},{p},0\n' for l, y, s, e, p in rows))
    assert inputs.detect_kind(str(csv_path)) == "csv"
    items = inputs.enumerate_videos(str(csv_path), video_root=str(root))
    assert [(it.split, it.video_id) for it in items] == [
        ("train", "abc_000010_000020"), ("train", "ghi_000005_000015"),
        ("train", "jkl_000001_000011"), ("val", "def_000000_000010")]
    assert os.path.exists(items[0].path) and items[0].label == "playing bagpipes"
    ks = kinetics_sounds.kinetics_classes()
    items = inputs.enumerate_videos(str(csv_path), video_root=str(root), labels=ks)
    assert {it.label for it in items} == {"playing bagpipes", "blowing out candles"}
    # Wildcard patterns find other extensions; headerless CSVs work too.
    headerless = tmp_path / "nohead.csv"
    headerless.write_text("abseiling,ghi,5,15,train\n")
    found = inputs.enumerate_videos(str(headerless), video_root=str(root),
                                    kinetics_path_pattern="{split}/{label}/{youtube_id}_*.*")
    assert len(found) == 1 and os.path.exists(found[0].path)
    # Build: per-split shards, labels kept, missing downloads skipped as not_found.
    result = builder.build_from_input(str(csv_path), _config(tmp_path / "out", num_shards=1),
                                      video_root=str(root), labels=ks)
    summary = result["summary"]
    assert sorted(summary["splits"]) == ["train", "val"]
    assert summary["skipped_by_reason"] == {"not_found": 1}
    assert os.path.exists(tmp_path / "out" / records.shard_name("val", 0, 1))
    rec = next(records.read_examples([str(tmp_path / "out" / records.shard_name("val", 0, 1))]))
    assert rec["label"].decode() == "blowing out candles" and rec["split"].decode() == "val"


# ----------------------------------------------------------------------------
# Kinetics-Sounds.


def test_kinetics_sounds_table():
    assert len(kinetics_sounds.PAPER_CLASSES) == 34 == len(set(kinetics_sounds.PAPER_CLASSES))
    assert kinetics_sounds.to_kinetics("blowing out") == "blowing out candles"
    assert kinetics_sounds.to_kinetics("dribbling ball") == "dribbling basketball"
    assert kinetics_sounds.to_kinetics("playing organ") == "playing organ"
    assert kinetics_sounds.to_kinetics("patting") is None
    released = kinetics_sounds.kinetics_classes()
    assert len(released) == 34 - len(kinetics_sounds.NOT_IN_KINETICS_400) == 31
    assert kinetics_sounds.from_kinetics("mowing lawn") == "mowing the lawn by pushing lawnmower"
    assert kinetics_sounds.is_kinetics_sounds("stomping grapes")
    assert not kinetics_sounds.is_kinetics_sounds("abseiling")
    with pytest.raises(KeyError):
        kinetics_sounds.to_kinetics("abseiling")
