"""l3.media on real media written with PyAV: containers, codecs, rates, VFR,
rotation, pixel aspect, alignment of frames and audio, and bad input."""

import os

import numpy as np
import pytest
import soxr

from l3 import media
from tests.fixtures import media as mf

SR = 48000


def _frame_indices(decoded):
    return np.array([mf.color_index(mf.frame_color(f))[0] for f in decoded.frames])


def _offsets(decoded, truth_times):
    """Per frame: stored time minus the source time of the frame its colour names."""
    idx = _frame_indices(decoded)
    return decoded.frame_times - np.asarray(truth_times)[idx]


@pytest.mark.parametrize("ext", [".mp4", ".mov", ".mkv", ".webm", ".ogg", ".avi", ".mpeg", ".ts"])
def test_containers_round_trip_and_alignment(tmp_path, ext):
    path = str(tmp_path / f"clip{ext}")
    truth = mf.make_video(path, seconds=2.0, fps=25, sample_rate=44100, channels=2)
    d = media.decode_video(path, fps=4)
    assert d.warnings == []
    assert all(f.shape == (256, 341, 3) and f.dtype == np.uint8 for f in d.frames)
    # 4 fps over 2 s from the first frame; each stored time is its frame's time.
    assert len(d.frames) == 8
    offsets = _offsets(d, truth["frame_times"])
    assert np.ptp(offsets) < 1e-3, offsets  # one constant shift (a container's mux delay)
    assert abs(offsets[0]) < 0.03
    assert np.all(np.diff(d.frame_times) > 0.2)
    # Audio: 48 kHz mono, the tone bursts start on whole seconds of the same clock.
    assert d.sample_rate == SR and d.audio.dtype == np.float32 and d.audio.ndim == 1
    assert 1.95 < d.audio_seconds < 2.1
    onsets = d.audio_start + mf.burst_onsets(d.audio, SR)
    onset_1s = onsets[np.argmin(np.abs(onsets - 1.0))]
    # A burst starts with source frame 25: audio and frames are shifted alike.
    assert abs((onset_1s - 1.0) - np.median(offsets)) < 0.005, (onset_1s, offsets)
    assert abs(mf.dominant_frequency(d.audio[: SR // 2], SR) - mf.pitch_for(0)) < 5


def test_lossless_audio_equals_source_resampled(tmp_path):
    path = str(tmp_path / "flac.mkv")
    truth = mf.make_video(path, seconds=2.0, sample_rate=44100, channels=2, audio_codec="flac")
    d = media.decode_video(path)
    source = truth["audio"].mean(axis=1)  # stereo mixdown is (L + R) / 2
    quantized = np.round(source * 32767) / 32767  # FLAC stores 16-bit samples
    expected = soxr.resample(quantized, 44100, SR, quality="HQ")
    assert d.audio_start == 0.0
    assert abs(len(d.audio) - len(expected)) <= 1
    n = min(len(d.audio), len(expected))
    np.testing.assert_allclose(d.audio[:n], expected[:n], atol=2e-4)


@pytest.mark.parametrize("rate,channels", [(22050, 1), (44100, 2), (48000, 1), (32000, 2), (8000, 1)])
def test_sample_rates_and_channels(tmp_path, rate, channels):
    path = str(tmp_path / f"a{rate}.mkv")
    mf.make_video(path, seconds=1.5, sample_rate=rate, channels=channels, audio_codec="flac")
    d = media.decode_video(path)
    assert abs(d.audio_seconds - 1.5) < 2e-3
    assert abs(mf.dominant_frequency(d.audio[: SR // 2], SR) - mf.pitch_for(0)) < 5
    np.testing.assert_allclose(mf.burst_onsets(d.audio, SR)[:1], [1.0], atol=0.002)


def test_surround_mixdown_weights(tmp_path):
    """5.1: L, R at 1, C, Ls, Rs at -3 dB, LFE dropped, normalised to unit gain."""
    path = str(tmp_path / "surround.mkv")
    n = SR
    t = np.arange(n) / SR
    freqs = [300, 500, 700, 900, 1100, 1300]  # FL FR FC LFE BL BR (FFmpeg's 5.1 order)
    audio = np.stack([0.15 * np.sin(2 * np.pi * f * t) for f in freqs], axis=1).astype(np.float32)
    media.write_video(path, mf.make_frames(10), 10, audio, SR, audio_codec="flac")
    d = media.decode_video(path, min_audio_seconds=0.5)
    weights = media.mixdown_weights(["FL", "FR", "FC", "LFE", "BL", "BR"])
    assert weights[3] == 0 and abs(weights.sum() - 1) < 1e-9
    np.testing.assert_allclose(weights[2] / weights[0], 0.7071, atol=1e-4)
    np.testing.assert_allclose(d.audio[:n], (audio @ weights)[: len(d.audio)], atol=2e-4)


def test_variable_frame_rate_takes_latest_frame_per_target(tmp_path):
    times = [0.0, 0.03, 0.31, 0.32, 0.33, 0.9, 1.45, 1.5, 1.51, 1.52, 1.9, 2.0]
    path = str(tmp_path / "vfr.mp4")
    mf.make_video(path, seconds=2.0, frame_times=times, fps=25)
    d = media.decode_video(path, fps=4)
    expected = []
    for k in range(9):  # targets 0, 0.25, ..., 2.0
        latest = max(i for i, t in enumerate(times) if t <= k / 4 + 1e-9)
        if latest not in expected:
            expected.append(latest)
    np.testing.assert_allclose(d.frame_times, [times[i] for i in expected], atol=1e-4)
    np.testing.assert_array_equal(_frame_indices(d), expected)


@pytest.mark.parametrize("rotate,corner,shape", [(90, "tr", (341, 256)), (180, "br", (256, 341)),
                                                 (270, "bl", (341, 256)), (0, "tl", (256, 341))])
def test_rotation_metadata_is_applied(tmp_path, rotate, corner, shape):
    """A phone's rotate=90 (turn clockwise to display) puts the top-left marker top-right."""
    path = str(tmp_path / f"rot{rotate}.mp4")
    mf.make_video(path, seconds=0.5, rotate=rotate)
    d = media.decode_video(path, min_audio_seconds=0.2)
    assert d.rotation == rotate
    assert d.frames[0].shape[:2] == shape
    assert mf.marker_corner(d.frames[0]) == corner


def test_non_square_pixels_are_resampled(tmp_path):
    path = str(tmp_path / "anamorphic.mp4")
    mf.make_video(path, seconds=0.5, size=(64, 48), sar=(2, 1))
    d = media.decode_video(path)
    assert d.frames[0].shape == (256, 683, 3)  # displayed 128x48, smaller side 256
    # The marker (a quarter of the width) is still a quarter of the width.
    row = d.frames[0][10, :, 0]
    assert abs(np.sum(row > 240) / row.size - 0.25) < 0.02


def test_max_seconds_and_resize(tmp_path):
    path = str(tmp_path / "long.mkv")
    mf.make_video(path, seconds=3.0, size=(96, 160), sample_rate=48000)
    d = media.decode_video(path, max_seconds=1.5, fps=2, resize_smaller_side=64)
    np.testing.assert_allclose(d.frame_times, [0.0, 0.48, 1.0])  # 25 fps: no frame at 0.5 s
    assert d.frames[0].shape == (107, 64, 3)
    assert len(d.audio) == int(1.5 * SR)


def test_short_video_stream_in_long_file(tmp_path):
    """Video stops at 1 s, audio goes on to 15 s: reading stops soon after max_seconds and
    the decoder's delayed frames are still kept."""
    path = str(tmp_path / "short_video.mp4")
    mf.make_video(path, seconds=1.0, audio_seconds=15.0, sample_rate=48000)
    d = media.decode_video(path, max_seconds=2.0)
    np.testing.assert_allclose(d.frame_times, [0.0, 0.24, 0.48, 0.72])
    np.testing.assert_array_equal(_frame_indices(d), [0, 6, 12, 18])
    assert d.audio_seconds == pytest.approx(2.0, abs=1e-3)


def test_video_without_audio_when_not_required(tmp_path):
    path = str(tmp_path / "silent_film.mp4")
    mf.make_video(path, seconds=1.0, audio=False)
    d = media.decode_video(path, require_audio=False)
    assert len(d.frames) == 4 and d.audio.size == 0


def test_silent_track_is_kept_with_a_warning(tmp_path):
    path = str(tmp_path / "silence.mkv")
    media.write_video(path, mf.make_frames(25), 25, np.zeros(48000, np.float32), SR, audio_codec="flac")
    d = media.decode_video(path)
    assert d.audio_seconds == pytest.approx(1.0, abs=1e-3)
    assert any("silence" in w for w in d.warnings)


def test_bad_inputs_raise_typed_errors(tmp_path):
    expected = mf.make_bad_files(str(tmp_path))
    for name, reason in expected.items():
        with pytest.raises(media.MediaError) as info:
            media.decode_video(str(tmp_path / name), min_audio_seconds=1.0)
        assert info.value.reason == reason, (name, info.value)
    with pytest.raises(media.MediaError) as info:
        media.decode_video(str(tmp_path / "missing.mp4"))
    assert info.value.reason == "not_found"


def test_decode_error_mid_stream_keeps_the_clean_part(tmp_path):
    """Garbage over the middle of the file: the packets it hits are lost (issue 17: as
    FFmpeg's CLI, decoding goes on); the frames the decoder conceals until the next key
    frame are dropped; every kept frame is the right one (concealed ones were not)."""
    src, bad = str(tmp_path / "src.mp4"), str(tmp_path / "bad.mp4")
    truth = mf.make_video(src, seconds=4.0)
    mf.corrupt_middle(src, bad, fraction=0.6)
    d = media.decode_video(bad, min_audio_seconds=1.0)
    assert any(w.startswith("lost ") and "packets of video stream #0 (h264)" in w
               for w in d.warnings), d.warnings
    assert any(w.startswith("dropped ") and "next key frame" in w for w in d.warnings)
    assert d.frame_times[-1] > 1.0 and len(d.frame_times) < 16
    assert d.audio_seconds > 3.9  # audio decodes on past the lost packets
    np.testing.assert_allclose(_offsets(d, truth["frame_times"]), 0, atol=1e-3)


def test_truncated_stream_says_so(tmp_path):
    src, cut = str(tmp_path / "src.mkv"), str(tmp_path / "cut.mkv")
    mf.make_video(src, seconds=4.0)
    with open(src, "rb") as f:
        data = f.read()
    with open(cut, "wb") as f:
        f.write(data[: len(data) // 2])
    d = media.decode_video(cut)
    assert any("truncated" in w for w in d.warnings), d.warnings
    assert d.frame_times[-1] < 3.0


def test_decode_audio_files(tmp_path):
    x = mf.tone_bursts(2.0, 22050)
    wav = str(tmp_path / "a.wav")
    media.write_wav(wav, x, 22050)
    y, start = media.decode_audio(wav, sample_rate=SR)
    assert start == 0.0
    expected = soxr.resample(np.round(x * 32768) / 32768, 22050, SR, quality="HQ")
    np.testing.assert_allclose(y, expected[: len(y)], atol=1e-4)
    y, _ = media.decode_audio(wav, sample_rate=16000, max_seconds=1.0)
    assert len(y) == 16000
    # Audio of a video container, and a lossy one.
    mp4 = str(tmp_path / "v.mp4")
    mf.make_video(mp4, seconds=1.0, sample_rate=44100)
    y, start = media.decode_audio(mp4, sample_rate=SR)
    assert start == 0.0 and abs(len(y) / SR - 1.0) < 0.03
    with pytest.raises(media.MediaError) as info:
        media.decode_audio(str(tmp_path / "nope.flac"), sample_rate=SR)
    assert info.value.reason == "not_found"


def test_write_wav_stereo_round_trip(tmp_path):
    x = np.stack([mf.tone_bursts(0.5, 16000), -mf.tone_bursts(0.5, 16000)], axis=1)
    path = str(tmp_path / "s.wav")
    media.write_wav(path, x, 16000)
    y, _ = media.decode_audio(path, sample_rate=16000)
    np.testing.assert_allclose(y, 0.0, atol=1e-4)  # L + R cancel in the mixdown
    assert os.path.getsize(path) == 44 + 2 * 2 * 8000


def test_media_error_is_picklable():
    import pickle
    e = pickle.loads(pickle.dumps(media.MediaError("decode_error", "boom")))
    assert e.reason == "decode_error" and e.message == "boom"
