"""process_audio_file / process_image_file / process_video_file and l3-embed's new flags.

Real files written here (WAV at four rates, PNG/JPEG, videos in four
containers); each output is compared with the array API on the same signal
or with the timeline's own definition, and bad files must be listed by name
while the others are written.
"""

import os
import struct
import subprocess
import sys
import wave
import zlib

import av
import numpy as np
import pytest
from PIL import Image

import l3
from l3 import media
from l3.core import presets
from l3.embeddings import inputs, timeline
from tests.fixtures.embeddings import Counting, make_small_export, noise

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RATE = presets.SMALL.sample_rate
D = presets.SMALL.embedding_dim
TOL = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_small_export(tmp_path_factory)


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height (no pixel data needed to trip the size check)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
                + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    made = {}
    for sr in (16000, 22050, 44100, 48000):
        for ch in (1, 2):
            x = noise(1.7, sr, channels=ch, seed=sr % 7 + ch)
            path = str(root / f"a{sr}_{ch}.wav")
            media.write_wav(path, x, sr)
            made[path] = (x, sr)
    return made


def test_process_audio_file_rates_channels_and_names(model, audio_files, tmp_path):
    paths = sorted(audio_files)
    counting = Counting(model)
    out = tmp_path / "out"
    summary = l3.process_audio_file(paths, counting, output_dir=str(out), batch_size=32)
    assert summary["failed"] == [] and len(summary["outputs"]) == 8
    # 8 files x 13 windows = 104 windows: batches cross files (per-file batches would be 8 calls).
    assert counting.audio_calls == [32, 32, 32, 8]
    for path in paths:
        with wave.open(path) as w:  # the WAV's PCM, read without PyAV
            sr, channels = w.getframerate(), w.getnchannels()
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, channels)
        assert sr == audio_files[path][1]
        ref_emb, ref_ts = l3.get_audio_embedding(pcm, sr, model)
        npz = np.load(out / (os.path.basename(path)[:-4] + ".npz"))  # openl3 naming: <base>.npz
        assert str(npz["kind"]) == "audio" and bool(npz["center"]) is True
        np.testing.assert_array_equal(npz["timestamps"], ref_ts)
        np.testing.assert_allclose(npz["embedding"], ref_emb, rtol=1e-3, atol=1e-4)
    # Existing outputs are kept; overwrite and suffix write new ones beside the input.
    again = l3.process_audio_file(paths[:2], model, output_dir=str(out))
    assert again["outputs"] == [] and len(again["existing"]) == 2
    beside = l3.process_audio_file(paths[0], model, suffix="h05", hop_size=0.5, center=False,
                                   feature="conv4_2_pooled")
    target = os.path.splitext(paths[0])[0] + "_h05.npz"
    assert beside["outputs"] == [target]
    npz = np.load(target)
    assert npz["embedding"].shape == (2, presets.SMALL.audio_transfer_dim)
    np.testing.assert_allclose(npz["timestamps"], [0.5, 1.0])


def test_bad_files_are_listed_and_the_rest_embedded(model, audio_files, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "garbage.wav").write_bytes(os.urandom(3000))
    (bad / "empty.wav").write_bytes(b"")
    (bad / "other").mkdir()
    good = sorted(audio_files)[0]
    twin = str(bad / "other" / os.path.basename(good))  # same output name as `good`
    media.write_wav(twin, noise(1.0, RATE), RATE)
    out = tmp_path / "out"
    summary = l3.process_audio_file(
        [str(bad / "garbage.wav"), good, str(bad / "missing.wav"), str(bad / "empty.wav"), twin],
        model, output_dir=str(out))
    assert summary["outputs"] == [str(out / (os.path.basename(good)[:-4] + ".npz"))]
    reasons = {os.path.basename(os.path.dirname(r["path"])) + "/" + os.path.basename(r["path"]):
               r["reason"] for r in summary["failed"]}
    assert reasons == {"bad/garbage.wav": "unreadable", "bad/missing.wav": "not_found",
                       "bad/empty.wav": "empty_file",
                       f"other/{os.path.basename(good)}": "output_collision"}
    for r in summary["failed"]:
        assert r["path"].split("/")[-1] in r["error"] or r["reason"] == "output_collision"


def test_process_image_file_grey_rgba_large_and_bombs(model, tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    rgba = np.concatenate([rgb, np.full((90, 120, 1), 128, np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb[..., 1]).save(tmp_path / "grey.png")
    yy, xx = np.mgrid[0:1800, 0:2400]
    big = np.stack([xx * 255 // 2400, yy * 255 // 1800, (xx // 40 + yy // 40) % 2 * 255],
                   -1).astype(np.uint8)
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=95)
    _png_header_only(str(tmp_path / "bomb.png"), 20000, 20000)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    names = ["rgb.png", "rgba.png", "grey.png", "big.jpg", "bomb.png", "broken.png"]
    out = tmp_path / "out"
    summary = l3.process_image_file([str(tmp_path / n) for n in names], model,
                                    output_dir=str(out))
    assert {os.path.basename(r["path"]): r["reason"] for r in summary["failed"]} == {
        "bomb.png": "image_too_large", "broken.png": "unreadable"}
    emb = {n.split(".")[0]: np.load(out / (n.split(".")[0] + ".npz"))["embedding"]
           for n in names[:4]}
    np.testing.assert_allclose(emb["rgb"], l3.get_image_embedding(rgb, model), **TOL)
    np.testing.assert_allclose(emb["rgba"], emb["rgb"], **TOL)  # alpha dropped
    np.testing.assert_allclose(emb["grey"], l3.get_image_embedding(rgb[..., 1], model), **TOL)
    # The big JPEG is decoded reduced (draft + reduce); its view matches the full-size one.
    view = inputs.eval_view(inputs.read_image_file(str(tmp_path / "big.jpg"), 72) / 255.0, 72, 64)
    full = inputs.eval_view(big / 255.0, 72, 64)
    assert np.abs(view - full).mean() < 0.02
    np.testing.assert_allclose(emb["big"], l3.get_image_embedding(
        inputs.read_image_file(str(tmp_path / "big.jpg"), 72), model), **TOL)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    frames = np.zeros((25, 48, 64, 3), np.uint8)
    frames[:, :, :, 0] = np.linspace(0, 255, 25, dtype=np.uint8)[:, None, None]
    audio = noise(2.5, 48000, channels=2, seed=9)
    made = []
    for ext in (".mp4", ".mkv", ".webm", ".avi"):
        path = str(root / f"clip{ext}")
        media.write_video(path, frames, fps=10, audio=0.5 * audio, sample_rate=48000)
        made.append(path)
    silent = str(root / "silent.mp4")
    media.write_video(silent, frames[:12], fps=10)
    return made, silent


def test_process_video_file_one_timeline(model, videos, tmp_path):
    paths, silent = videos
    (tmp_path / "zero.mp4").write_bytes(b"")
    sound_only = str(tmp_path / "sound_only.mkv")
    media.write_wav(sound_only, noise(1.0, RATE), RATE)  # a container without a video stream
    out = tmp_path / "out"
    no_frames = str(tmp_path / "no_frames.mkv")  # a valid header, a video stream, zero frames
    container = av.open(no_frames, "w")
    stream = container.add_stream("mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    container.start_encoding()  # writes the header; no frame follows
    container.close()
    summary = l3.process_video_file(
        paths + [silent, str(tmp_path / "zero.mp4"), sound_only, no_frames], model,
        output_dir=str(out), fps=2.0)
    failed = {os.path.basename(r["path"]): r for r in summary["failed"]}
    assert failed.pop("no_frames.mkv")["reason"] in ("unreadable", "decode_error")
    assert {name: r["reason"] for name, r in failed.items()} == {
        "zero.mp4": "empty_file", "sound_only.mkv": "no_video_stream",
        # clip.mkv, clip.webm, clip.avi would all write out/clip.npz after clip.mp4:
        "clip.mkv": "output_collision", "clip.webm": "output_collision",
        "clip.avi": "output_collision"}
    assert sorted(os.listdir(out)) == ["clip.npz", "silent.npz"]
    # Each container on its own.
    for path in paths:
        folder = tmp_path / path[-4:].strip(".")
        res = l3.process_video_file(path, model, output_dir=str(folder), fps=2.0)
        assert res["failed"] == [], res
        v = np.load(folder / "clip.npz")
        assert str(v["kind"]) == "video"
        ft = v["image_timestamps"]
        np.testing.assert_allclose(ft, [0.0, 0.5, 1.0, 1.5, 2.0], atol=0.06)
        assert v["image_embedding"].shape == (5, D)
        frames = media.decode_video(path, max_seconds=None, fps=2.0, require_audio=False,
                                    resize_smaller_side=presets.SMALL.resize_side).frames
        h, w = frames[0].shape[:2]  # 72 x 96: the central 64 x 64, scaled to [0, 1]
        crops = np.stack([f[(h - 64) // 2:(h - 64) // 2 + 64, (w - 64) // 2:(w - 64) // 2 + 64]
                          for f in frames]) / 255.0
        np.testing.assert_allclose(v["image_embedding"], model.embed_images(crops)["embedding"],
                                   **TOL)
        decoded = media.decode_audio(path, sample_rate=RATE)
        ref_emb, ref_ts = l3.get_audio_embedding(decoded[0], RATE, model)
        np.testing.assert_allclose(v["audio_timestamps"], ref_ts + decoded[1], atol=1e-9)
        np.testing.assert_allclose(v["audio_embedding"], ref_emb, **TOL)
        # Alignment: every frame lies in windows first..stop-1, and the nearest centre is within
        # half a hop of the frame.
        starts = np.round((v["audio_timestamps"] - decoded[1]) * RATE).astype(int) - RATE // 2
        for f, (a, b), k in zip(ft, v["image_audio_windows"], v["image_audio_index"]):
            inside = [i for i, s in enumerate(starts)
                      if s <= (f - decoded[1]) * RATE < s + RATE]
            assert list(range(a, b)) == inside and a <= k < b
            assert abs(v["audio_timestamps"][k] - f) <= 0.05 + 1e-9
    s = np.load(out / "silent.npz")
    assert s["audio_embedding"].shape == (0, D) and s["image_embedding"].shape == (3, D)
    np.testing.assert_allclose(s["image_timestamps"], [0.0, 0.5, 1.0], atol=0.06)
    assert (s["image_audio_index"] == -1).all()


def test_frames_in_windows_against_brute_force():
    starts = timeline.window_starts(40000, 16000, 1600.0, "centered")
    times = np.array([-0.6, -0.5, 0.0, 0.26, 1.0, 2.3, 2.49, 2.51, 9.0])
    ranges, nearest = timeline.frames_in_windows(times, starts, 16000, 16000, audio_start_s=0.01)
    for t, (a, b), k in zip(times, ranges, nearest):
        x = (t - 0.01) * 16000
        inside = [i for i, s in enumerate(starts) if s <= x < s + 16000]
        assert list(range(a, b)) == inside
        if inside:
            centres = starts[inside] + 8000
            assert k == inside[int(np.argmin(np.abs(centres - x)))]
        else:
            assert k == -1


def test_binary_new_flags(model, audio_files, tmp_path):
    src = sorted(audio_files)[0]  # 1.7 s at 16 kHz, mono
    out = tmp_path / "out"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    args = [sys.executable, "-m", "l3.bin.embed", f"--export_dir={model.export_dir}",
            f"--input={src}", f"--output_dir={out}", "--noprogress"]
    proc = subprocess.run(args + ["--center", "--hop_size=0.25", "--batch_size=3",
                                  "--audio_feature=conv4_2_pooled", "--suffix=c"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    npz = np.load(out / (os.path.basename(src) + "_c.npz"))
    assert bool(npz["center"]) and str(npz["feature"]) == "conv4_2_pooled"
    np.testing.assert_allclose(npz["timestamps"], 0.25 * np.arange(6))  # 1 + ceil(1.2 / 0.25)
    assert npz["embedding"].shape == (6, presets.SMALL.audio_transfer_dim)
    stamp = os.stat(out / (os.path.basename(src) + "_c.npz")).st_mtime_ns
    proc = subprocess.run(args + ["--suffix=c", "--overwrite"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "embedded 1 files" in proc.stdout, proc.stderr[-3000:]
    npz = np.load(out / (os.path.basename(src) + "_c.npz"))  # defaults: today's behaviour
    assert os.stat(out / (os.path.basename(src) + "_c.npz")).st_mtime_ns != stamp
    np.testing.assert_allclose(npz["timestamps"], 0.5 + 0.1 * np.arange(8))
    assert not bool(npz["center"]) and npz["embedding"].shape == (8, D)
