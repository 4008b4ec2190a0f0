"""The bundled corpus (l3.demo.corpus): layout, determinism, decodability, design.

Files are generated once per module in a tiny configuration (all 10
classes, 2 + 1 videos each, 2 s, 4 fps, 96x128); properties of the default
configuration are checked on plans (cheap) and in-memory renderings.
"""

import csv
import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest

from l3.demo import corpus

TINY = dict(num_classes=10, videos_per_class={"train": 2, "val": 0, "test": 1}, seconds=2,
            duration_jitter=0, fps=4, size=(96, 128), seed=3, unrelated_fraction=0.25)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return corpus.generate_corpus(root, workers=2, progress=False, **TINY)


@pytest.fixture(scope="module")
def default_plans():
    return corpus.plan_corpus(corpus.CorpusParams())


def _decode(path):
    """(frames uint8 [T, H, W, 3], audio float32 [channels, samples], video stream, audio stream)."""
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        info = (v.codec_context.name, v.width, v.height, float(v.average_rate),
                a.codec_context.name, a.sample_rate, a.channels)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(v)])
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)
    return frames, audio, info


# --- files -----------------------------------------------------------------

def test_layout_csv_and_json(tiny):
    root = tiny.root
    meta = json.loads((root / "corpus.json").read_text())
    assert meta["params"] == corpus.CorpusParams(**TINY).to_json()
    assert [c["name"] for c in meta["classes"]] == [c.name for c in corpus.CLASSES]
    assert all(c["visual"] and c["audio"] for c in meta["classes"])
    assert len(meta["videos"]) == 10 * 3 == len(tiny.videos)
    rows = list(csv.DictReader(open(root / "videos.csv")))
    assert list(rows[0]) == ["label", "youtube_id", "time_start", "time_end", "split"]
    assert len(rows) == len(meta["videos"])
    for row, v in zip(rows, meta["videos"]):
        assert (row["label"], row["youtube_id"], row["split"]) == (v["label"], v["youtube_id"], v["split"])
        # The Kinetics download layout: <split>/<label>/<id>_<start:06d>_<end:06d>.mp4
        name = f"{row['youtube_id']}_{int(row['time_start']):06d}_{int(row['time_end']):06d}.mp4"
        assert v["path"] == f"{v['split']}/{v['label']}/{name}"
        assert (root / v["path"]).is_file()
        assert len(v["youtube_id"]) == 11 and v["youtube_id"].isalnum()
    assert len({v["youtube_id"] for v in meta["videos"]}) == len(meta["videos"])
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == sorted([".lock", "corpus.json", "videos.csv", "objects.json"]
                           + [v["path"] for v in meta["videos"]])
    # objects.json: where the object is in every frame of every test video.
    objects = json.loads((root / "objects.json").read_text())
    test = [v for v in meta["videos"] if v["split"] == "test"]
    assert sorted(objects["videos"]) == sorted(v["video_id"] for v in test)
    for v in test:
        frames = objects["videos"][v["video_id"]]["frames"]
        assert len(frames) == v["duration"] * v["fps"]
        assert all(len(f["boxes"]) == 1 for f in frames)
    assert [len(tiny.split(s)) for s in corpus.SPLITS] == [20, 0, 10, 0]


def test_decodable_with_pyav(tiny):
    for v in tiny.videos:
        frames, audio, info = _decode(tiny.root / v["path"])
        assert info == ("h264", 128, 96, 4.0, "aac", v["sample_rate"], v["channels"])
        assert frames.shape == (v["duration"] * 4, 96, 128, 3)
        # AAC adds up to ~2 encoder frames of priming/padding.
        assert abs(audio.shape[1] / v["sample_rate"] - v["duration"]) < 0.1
        assert 0.05 < np.abs(audio).max() <= 1.0
        assert frames.std() > 5


def test_reuse_is_fast_and_touches_nothing(tiny, monkeypatch):
    """Fast by construction, not by a clock: a reuse renders, encodes and locks nothing
    (each would raise here), and leaves every file as it was."""
    from l3.demo.corpus import write as corpus_write

    def forbidden(*args, **kwargs):
        raise AssertionError("a reuse must not render, encode, generate or lock")

    for name in ("render_video", "write_corpus_video", "_generate", "_locked"):
        monkeypatch.setattr(corpus_write, name, forbidden)
    monkeypatch.setattr(corpus_write.media, "write_video", forbidden)
    mtimes = {p: p.stat().st_mtime_ns for p in tiny.paths()}
    again = corpus.generate_corpus(tiny.root, progress=False, **TINY)
    assert again.reused
    assert again.videos == tiny.videos
    assert {p: p.stat().st_mtime_ns for p in again.paths()} == mtimes


def test_objects_added_to_a_corpus_made_before_them(tiny):
    """A corpus generated before objects.json existed gets it on reuse; no video is rewritten."""
    data = (tiny.root / "objects.json").read_bytes()
    mtimes = {p: p.stat().st_mtime_ns for p in tiny.paths()}
    (tiny.root / "objects.json").unlink()
    again = corpus.generate_corpus(tiny.root, progress=False, **TINY)
    assert again.reused and again.objects_path.read_bytes() == data
    assert {p: p.stat().st_mtime_ns for p in again.paths()} == mtimes


def test_other_parameters_refused_unless_overwrite(tiny, tmp_path):
    with pytest.raises(FileExistsError):
        corpus.generate_corpus(tiny.root, progress=False, **dict(TINY, seed=4))
    small = dict(TINY, videos_per_class={"train": 1}, num_classes=2)
    corpus.generate_corpus(tmp_path, progress=False, **small)
    other = corpus.generate_corpus(tmp_path, progress=False, overwrite=True, **dict(small, seed=9))
    assert other.params.seed == 9
    assert sorted(p.name for p in tmp_path.rglob("*.mp4")) == sorted(p.name for p in other.paths())


def test_resumes_after_interruption(tmp_path):
    params = dict(TINY, num_classes=2, videos_per_class={"train": 2})
    info = corpus.generate_corpus(tmp_path, progress=False, **params)
    first, second = info.paths()[:2]
    mtime = second.stat().st_mtime_ns
    data = first.read_bytes()
    # A killed run: no corpus.json, one video missing, a half-written temp file.
    (tmp_path / "corpus.json").unlink()
    first.unlink()
    partial = first.with_name(f".{first.stem}.partial.mp4")
    partial.write_bytes(b"truncated")
    again = corpus.generate_corpus(tmp_path, progress=False, **params)
    assert not again.reused and first.read_bytes() == data
    assert second.stat().st_mtime_ns == mtime
    assert not partial.exists()


def test_concurrent_generations_share_one_corpus(tmp_path):
    """Two processes asking for the same corpus (pytest-xdist, two demos): one
    generates, the other waits on the lock and reuses."""
    code = ("import sys; from l3 import corpus; "
            "info = corpus.generate_corpus(sys.argv[1], progress=False, num_classes=2, "
            "videos_per_class={'train': 3}, seconds=2, duration_jitter=0, fps=4, size=(64, 80)); "
            "print(info.reused)")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    assert sorted(out.strip() for out, _ in outs) == ["False", "True"]
    info = corpus.load_corpus(tmp_path)
    assert len(info.videos) == 6 and all(p.stat().st_size > 1000 for p in info.paths())
    assert not list(tmp_path.rglob(".*.partial.mp4"))


def test_same_seed_same_bytes_any_workers(tiny, tmp_path):
    """One worker vs the module's two: identical files (and so identical content)."""
    again = corpus.generate_corpus(tmp_path, workers=1, progress=False, **TINY)
    for a, b in zip(tiny.paths(), again.paths()):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_default_corpus_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("L3_CACHE", str(tmp_path))
    assert corpus.default_corpus_dir() == tmp_path / "corpus-v1"
    monkeypatch.delenv("L3_CACHE")
    assert str(corpus.default_corpus_dir()).endswith(os.path.join(".cache", "l3", "corpus-v1"))


# --- arrays and plans ------------------------------------------------------

def test_render_deterministic():
    params = corpus.CorpusParams(**TINY)
    a = corpus.plan_corpus(params)[5]
    b = corpus.plan_corpus(params)[5]
    assert a.meta() == b.meta()
    for x, y in zip(corpus.render_video(a), corpus.render_video(b)):
        np.testing.assert_array_equal(x, y)
    c = corpus.plan_corpus(corpus.CorpusParams(**dict(TINY, seed=4)))[5]
    assert not np.array_equal(corpus.render_frames(a), corpus.render_frames(c))


def test_plan_of_a_video_does_not_depend_on_the_split_sizes():
    small = corpus.plan_corpus(corpus.CorpusParams(videos_per_class={"train": 2, "test": 1}))
    big = corpus.plan_corpus(corpus.CorpusParams())
    by_id = {p.video_id: p for p in big}
    for p in small:
        assert by_id[p.video_id].p["scale"] == p.p["scale"]


def test_nuisances_in_default_corpus(default_plans):
    metas = [p.meta() for p in default_plans if p.split != "scene"]   # scenes: test_scene.py
    assert len(metas) == 10 * (32 + 6 + 10) and len(default_plans) == 10 * (32 + 6 + 10 + 10)
    for split, n in (("train", 320), ("val", 60), ("test", 100)):
        unrelated = [m for m in metas if m["split"] == split and not m["sound_related"]]
        assert len(unrelated) == round(0.05 * n)
        assert {m["soundtrack"] for m in unrelated} <= {"music", "speech"}
    frac = lambda f: np.mean([bool(f(m)) for m in metas])  # noqa: E731
    assert 0.2 < frac(lambda m: m["silent_gaps"]) < 0.4
    assert 0.3 < frac(lambda m: m["offscreen"]) < 0.5
    assert frac(lambda m: any(o["kind"].startswith("class:") for o in m["offscreen"])) > 0.05
    assert 0.1 < frac(lambda m: m["hum"]) < 0.3
    assert 0.1 < frac(lambda m: m["distractor_object"]) < 0.3
    assert 0.1 < frac(lambda m: m["channels"] == 2) < 0.3
    assert {m["sample_rate"] for m in metas} == {48000, 44100, 22050}
    assert {m["duration"] for m in metas} == {4, 5, 6}
    scales = [m["scale"] for m in metas]
    assert min(scales) < 0.78 and max(scales) > 1.4
    for c in range(10):   # both sizes of every object; the bigger one sounds lower
        small = [m for m in metas if m["label_index"] == c and m["variant"] == "small"]
        large = [m for m in metas if m["label_index"] == c and m["variant"] == "large"]
        assert len(small) > 10 and len(large) > 10
        assert max(m["pitch"] for m in large) < min(m["pitch"] for m in small)
    xs = [m["position"][1] for m in metas]
    assert min(xs) < 0.4 and max(xs) > 0.6
    for m in metas:   # gaps are short: a 1-s window always keeps most of its sound
        assert all(b - a <= 0.6 for a, b in m["silent_gaps"])


def test_object_visible_in_every_frame(default_plans):
    """Part of the object lies inside every 64x64 crop of the frame resized to 72 (in every
    frame) of every split the network sees (the scene split is for localization only)."""
    for plan in [p for p in default_plans if p.split != "scene"][::7]:
        h, w = plan.size
        # Smaller side 72 -> crops cover rows [8/72, 64/72) and columns [W'-64, 64) of W' = 72 w / h.
        wr = 72 * w / h
        rows = slice(int(np.ceil(h * 8 / 72)), int(h * 64 / 72))
        cols = slice(int(np.ceil(w * (wr - 64) / wr)), int(w * 64 / wr))
        for k in range(plan.duration * plan.fps):
            img = np.zeros((h, w, 3), np.float32)
            corpus.draw_object(img, plan, k / plan.fps)
            # Drawn on black: anything non-black is the object (bar near-black parts).
            assert (img[rows, cols].max(-1) > 0.2).sum() >= 20, (plan.label, k)


def test_class_sound_in_every_second():
    """Every 1-s window of a class track has sound, except around a muted stretch."""
    rng = np.random.default_rng(0)
    sr = 16000
    for cls in corpus.CLASSES:
        for _ in range(4):
            p = corpus.class_params(rng, cls, 6, (120, 160))
            x = np.abs(cls.sound(rng, p, sr, 6 * sr))
            peak = x.max()
            for start in np.arange(0, 5.01, 0.25):
                window = x[int(start * sr):int((start + 1) * sr)]
                assert window.max() > 0.2 * peak, (cls.name, start)


def test_events_are_in_sync_with_sound():
    """Event classes make their sound at their visible events (bounce, hit, tick...)."""
    rng = np.random.default_rng(1)
    sr = 16000
    for cls in corpus.CLASSES:
        p = corpus.class_params(rng, cls, 5, (120, 160))
        if cls.name in ("siren", "engine", "whistle") or len(p["events"]) < 3:
            continue
        x = cls.sound(rng, p, sr, 5 * sr) ** 2
        energy = lambda t0, t1: x[int(t0 * sr):int(t1 * sr)].mean()  # noqa: E731
        after = np.mean([energy(e, e + 0.03) for e in p["events"] if e > 0.05])
        before = np.mean([energy(e - 0.04, e - 0.01) for e in p["events"] if e > 0.05])
        assert after > 2 * before, cls.name


def _features(plan):
    """Simple statistics of a video: mean RGB of the frame, hue histogram of
    saturated pixels (+ share of white ones), log power in 16 bands, 0.1-8 kHz."""
    frames, audio = corpus.render_video(plan)
    audio = audio.mean(-1) if audio.ndim == 2 else audio
    rgb = frames.reshape(-1, 3).astype(np.float32) / 255
    mx, mn = rgb.max(1), rgb.min(1)
    sat = (mx - mn) / (mx + 1e-6)
    keep = (sat > 0.55) & (mx > 0.3)
    r, g, b = rgb[keep].T
    hue = np.degrees(np.arctan2(np.sqrt(3) * (g - b), 2 * r - g - b)) % 360
    hist = np.histogram(hue, bins=18, range=(0, 360))[0] / max(len(hue), 1)
    white = np.mean((mn > 0.85))
    n = 4096
    spec = np.abs(np.fft.rfft(audio[: (len(audio) // n) * n].reshape(-1, n), axis=1)) ** 2
    f = np.fft.rfftfreq(n, 1 / plan.sample_rate)
    edges = np.geomspace(100, 8000, 17)
    bands = np.array([spec[:, (f >= lo) & (f < hi)].mean() for lo, hi in zip(edges[:-1], edges[1:])])
    return rgb.mean(0), np.concatenate([hist, [white * 5]]), np.log(bands + 1e-12)


def _nearest_centroid_accuracy(x, y):
    """Leave-one-out nearest class mean on z-scored features."""
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    hits = 0
    for i in range(len(y)):
        m = np.ones(len(y), bool)
        m[i] = False
        cents = np.stack([x[m & (y == c)].mean(0) for c in np.unique(y)])
        hits += np.argmin(((cents - x[i]) ** 2).sum(1)) == y[i]
    return hits / len(y)


def test_classes_separable_by_simple_statistics_but_not_by_mean_colour():
    params = corpus.CorpusParams(videos_per_class={"train": 8}, seconds=2, duration_jitter=0,
                                 fps=2, unrelated_fraction=0.0, seed=11)
    plans = corpus.plan_corpus(params)
    feats = [_features(p) for p in plans]
    y = np.array([p.label_index for p in plans])
    mean_rgb, hue, bands = (np.stack(f) for f in zip(*feats))
    # Object colours separate classes; the whole frame's mean colour hardly
    # does (random backgrounds dominate it), so a network must find the object.
    assert _nearest_centroid_accuracy(hue, y) > 0.7
    assert _nearest_centroid_accuracy(mean_rgb, y) < 0.35
    # The sound's spectral envelope separates classes despite noise and off-screen sounds.
    assert _nearest_centroid_accuracy(bands, y) > 0.6
