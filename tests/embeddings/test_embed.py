"""l3-embed: windows and timestamps, audio/image/video outputs, bad files, resume and overwrite."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from l3 import media
from l3.core import presets
from l3.embeddings import api, files, inputs, tool
from tests.fixtures.embeddings import make_small_export

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
D = presets.SMALL.embedding_dim
P_AUDIO = presets.SMALL.audio_transfer_dim


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_small_export(tmp_path_factory)


def _tone(seconds, rate, channels=1, freq=440.0):
    t = np.arange(int(round(seconds * rate))) / rate
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.default_rng(0).standard_normal(len(t))
    return np.stack([x, 0.5 * x], 1) if channels == 2 else x


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    (root / "sub").mkdir()
    media.write_wav(str(root / "long.wav"), _tone(2.5, 22_050, channels=2), 22_050)
    media.write_wav(str(root / "sub" / "short.wav"), _tone(0.3, 16_000), 16_000)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(
        root / "sub" / "picture.png")
    frames = np.zeros((30, 48, 64, 3), np.uint8)
    frames[:, :, :, 0] = np.linspace(0, 255, 30, dtype=np.uint8)[:, None, None]
    media.write_video(str(root / "clip.mp4"), frames, fps=10, audio=_tone(3.0, 48_000),
                      sample_rate=48_000)
    media.write_video(str(root / "silent.mp4"), frames[:20], fps=10)
    return root


def _bad_files(folder):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "garbage.wav"), "wb") as f:
        f.write(os.urandom(2000))
    open(os.path.join(folder, "empty.mp4"), "wb").close()
    with open(os.path.join(folder, "broken.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n not really")


def test_audio_windows_and_centre_timestamps(model):
    rate = model.sample_rate  # 16 kHz: no resampling, so windows can be checked exactly
    x = np.random.default_rng(1).standard_normal(int(2.35 * rate)).astype(np.float32) * 0.1
    emb, times = api.get_audio_embedding(x, rate, model, center=False, hop_size=0.25, batch_size=3)
    starts = np.arange(0, len(x) - rate + 1, rate // 4)
    assert emb.shape == (len(starts), D) and len(starts) == 6
    np.testing.assert_allclose(times, (starts + rate / 2) / rate)
    direct = model.embed_audio(np.stack([x[s:s + rate] for s in starts]))["embedding"]
    np.testing.assert_allclose(emb, direct, rtol=1e-4, atol=1e-5)
    with pytest.warns(inputs.ShortAudioWarning, match="audio: 0.333 s"):  # shorter than 1 s
        emb, times = api.get_audio_embedding(x[:rate // 3], rate, model, center=False)
    assert emb.shape == (1, D) and times.tolist() == [0.5]
    np.testing.assert_allclose(
        emb[0],
        model.embed_audio(np.pad(x[:rate // 3], (0, rate - rate // 3))[None])["embedding"][0],
        rtol=1e-4, atol=1e-5)


def test_embed_files_audio_image_video(model, media_dir, tmp_path):
    out = tmp_path / "out"
    summary = tool.embed_files(model, [str(media_dir)], str(out), progress=False)
    assert summary["embedded"] == 5 and summary["skipped"] == 0, summary
    assert json.loads((out / "skipped.json").read_text()) == []

    a = np.load(out / "long.wav.npz")
    assert str(a["kind"]) == "audio" and str(a["feature"]) == "embedding"
    assert a["embedding"].shape == (16, D) and a["embedding"].dtype == np.float32
    np.testing.assert_allclose(a["timestamps"], 0.5 + 0.1 * np.arange(16), atol=1e-6)

    s = np.load(out / "sub" / "short.wav.npz")
    assert s["embedding"].shape == (1, D) and s["timestamps"].tolist() == [0.5]

    im = np.load(out / "sub" / "picture.png.npz")
    assert str(im["kind"]) == "image" and im["embedding"].shape == (1, D)

    v = np.load(out / "clip.mp4.npz")
    assert str(v["kind"]) == "video"
    assert v["image_embedding"].shape == (3, D)
    np.testing.assert_allclose(v["image_timestamps"], [0.0, 1.0, 2.0], atol=0.06)
    n_audio = len(v["audio_timestamps"])
    assert v["audio_embedding"].shape == (n_audio, D) and 20 <= n_audio <= 21
    np.testing.assert_allclose(np.diff(v["audio_timestamps"]), 0.1, atol=1e-6)
    assert abs(v["audio_timestamps"][0] - 0.5) < 0.06  # same clock as the frames
    # Different frames (the red ramp) give different image embeddings.
    assert not np.allclose(v["image_embedding"][0], v["image_embedding"][2])

    silent = np.load(out / "silent.mp4.npz")
    assert silent["audio_embedding"].shape == (0, D) and silent["image_embedding"].shape == (2, D)


def test_bad_files_are_skipped_and_reported(model, media_dir, tmp_path):
    bad = tmp_path / "bad"
    _bad_files(str(bad))
    listing = tmp_path / "files.txt"
    listing.write_text(f"# a comment\n{media_dir / 'long.wav'}\n\n"
                       "bad/garbage.wav\nbad/missing.wav\n")
    out = tmp_path / "out"
    summary = tool.embed_files(model, [str(listing), str(bad), str(tmp_path / "nowhere.mp3")],
                               str(out), progress=False)
    assert summary["embedded"] == 1
    skipped = json.loads((out / "skipped.json").read_text())
    by_name = {os.path.basename(r["path"]): r["reason"] for r in skipped}
    assert by_name == {"missing.wav": "not_found", "nowhere.mp3": "not_found",
                       "garbage.wav": "unreadable", "empty.mp4": "empty_file",
                       "broken.png": "unreadable"}
    assert summary["skipped"] == 5
    written = [os.path.relpath(p, out) for p in summary["outputs"]]
    assert len(written) == 1 and written[0].endswith("long.wav.npz")
    leftovers = [f for _, _, names in os.walk(out) for f in names if f.endswith(".tmp")]
    assert not leftovers


def test_resume_keeps_outputs_and_overwrite_recomputes(model, media_dir, tmp_path):
    out = tmp_path / "out"
    paths = [str(media_dir / "long.wav"), str(media_dir / "sub" / "short.wav")]
    first = tool.embed_files(model, paths, str(out), progress=False)
    assert first["embedded"] == 2
    target = out / "long.wav.npz"
    stamp = target.stat().st_mtime_ns
    again = tool.embed_files(model, paths, str(out), progress=False)
    assert again["embedded"] == 0 and again["existing"] == 2
    assert target.stat().st_mtime_ns == stamp
    os.utime(target, ns=(stamp - 10**9, stamp - 10**9))
    forced = tool.embed_files(model, paths, str(out), overwrite=True, progress=False,
                              options=files.Options(center=False, hop_size=0.5,
                                                    audio_feature="conv4_2_pooled"))
    assert forced["embedded"] == 2
    a = np.load(target)
    assert a["embedding"].shape == (4, P_AUDIO) and float(a["hop_size"]) == 0.5
    assert target.stat().st_mtime_ns != stamp - 10**9


def test_output_names_mirror_inputs_and_do_not_collide(tmp_path):
    for rel in ("a/x.wav", "b/x.wav", "b/x.mp4", "b/notes.md"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    paths, missing = files.collect_inputs([str(tmp_path / "a"), str(tmp_path / "b")])
    assert sorted(tool.output_names(paths).values()) == ["a/x.wav.npz", "b/x.mp4.npz",
                                                         "b/x.wav.npz"]
    assert sorted(tool.output_names(paths, "v2").values()) == ["a/x.wav_v2.npz", "b/x.mp4_v2.npz",
                                                               "b/x.wav_v2.npz"]
    assert missing == []


def test_binary(model, media_dir, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-m", "l3.bin.embed", f"--export_dir={model.export_dir}",
         f"--input={media_dir / 'sub'}", f"--input={media_dir / 'long.wav'}", f"--output_dir={out}",
         "--hop_size=0.5", "--noprogress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "embedded 3 files" in proc.stdout
    assert np.load(out / "long.wav.npz")["embedding"].shape == (4, D)
    assert (out / "sub" / "picture.png.npz").exists() and (out / "skipped.json").exists()
