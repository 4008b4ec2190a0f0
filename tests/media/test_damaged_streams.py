"""Damaged streams (issue 17, item 2): packets the decoder rejects are lost one by one, as
FFmpeg's command line loses them, and the rest of the file is kept.

Real files: `media_fixtures.make_video` writes frames whose colour says their
index and tone bursts; `corrupt_packets` inverts the payload of chosen audio
packets in place (the container intact), so FLAC's frame CRC makes its decoder
reject exactly those packets.
"""

import logging

import numpy as np
import pytest

from l3 import media
from l3.embeddings import files
from l3_tfrecords import workers
from l3_tfrecords.inputs import VideoItem
from tests.fixtures import media as mf

SR = 48000
SECONDS = 4.0


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("streams") / "clean video.mkv")
    truth = mf.make_video(path, seconds=SECONDS, fps=25.0, sample_rate=SR, channels=1,
                          audio_codec="flac")
    return path, truth


def test_lost_audio_packets_keep_the_rest(clean, tmp_path):
    path, _ = clean
    bad = str(tmp_path / "bad audio.mkv")
    lost = mf.corrupt_packets(path, bad, "audio", start=5, every=3)
    ref = media.decode_video(path, max_seconds=None)
    got = media.decode_video(bad, max_seconds=None, min_audio_seconds=1.0)
    # Every frame decoded, in order (the video stream is untouched).
    assert [mf.color_index(mf.frame_color(f))[0] for f in got.frames] == \
        [mf.color_index(mf.frame_color(f))[0] for f in ref.frames]
    assert len(got.frames) == int(SECONDS * media.DEFAULT_FPS)
    # The audio: full length (less a lost last packet, which nothing follows to fill);
    # outside the lost packets' spans equal to the clean decode, inside them silence.
    assert got.audio_start == ref.audio_start
    assert 0 <= len(ref.audio) - len(got.audio) <= max(d for _, d in lost) * SR + 1
    n = len(got.audio)
    inside = np.zeros(n, bool)
    for t, d in lost:
        inside[int(t * SR):int((t + d) * SR)] = True
    near = lambda mask: np.convolve(mask, np.ones(401), "same") > 0  # the resampler's reach
    np.testing.assert_allclose(got.audio[~near(inside)], ref.audio[:n][~near(inside)], atol=2e-3)
    core = inside & ~near(~inside)
    assert core.sum() > 0.2 * SR and np.abs(got.audio[core]).max() < 1e-3
    assert np.abs(ref.audio[:n][core]).max() > 0.1  # there was sound there
    warning = [w for w in got.warnings if w.startswith("lost ")]
    assert len(warning) == 1 and warning[0].startswith(
        f"lost {len(lost)} of ") and "packets of audio stream #1 (flac)" in warning[0], got.warnings


def test_builder_and_embedding_tool_keep_the_file(clean, tmp_path, caplog):
    path, _ = clean
    bad = str(tmp_path / "bad.mkv")
    lost = mf.corrupt_packets(path, bad, "audio", start=2, every=4)
    settings = {"max_seconds": 10.0, "fps": 4.0, "resize_smaller_side": 32, "sample_rate": SR,
                "min_audio_seconds": 1.0, "jpeg_quality": 90}
    result = workers.process_video(VideoItem(path=bad, video_id="bad"), settings)
    assert result.ok, result.message
    assert any(w.startswith(f"lost {len(lost)} of ") for w in result.warnings), result.warnings
    assert result.audio_samples >= (SECONDS - 0.05) * SR
    with caplog.at_level(logging.WARNING):
        out = files.decode(bad, "video", sample_rate=16000, fps=4.0, side=32, max_seconds=None)
    assert len(out["frames"]) == 16 and len(out["audio"]) >= (SECONDS - 0.05) * 16000
    assert f"lost {len(lost)} of " in caplog.text


def test_audio_file_with_lost_packets(tmp_path, caplog):
    src, bad = str(tmp_path / "a.mkv"), str(tmp_path / "a bad.mkv")
    mf.make_video(src, seconds=3.0, fps=5.0, sample_rate=SR, channels=1, audio_codec="flac")
    lost = mf.corrupt_packets(src, bad, "audio", start=3, every=5)
    with caplog.at_level(logging.WARNING):
        audio, _ = media.decode_audio(bad, sample_rate=SR)
    assert len(audio) >= 2.95 * SR and f"lost {len(lost)} of " in caplog.text


def test_a_file_is_skipped_only_when_too_little_decodes(clean, tmp_path):
    path, _ = clean
    none_left = str(tmp_path / "no audio left.mkv")
    mf.corrupt_packets(path, none_left, "audio", start=0, every=1)
    with pytest.raises(media.MediaError) as info:
        media.decode_video(none_left, min_audio_seconds=1.0)
    assert info.value.reason == "decode_error" and "lost" in info.value.message
    # Only the first packets survive: under a second of audio.
    short = str(tmp_path / "short.mkv")
    mf.corrupt_packets(path, short, "audio", start=3, every=1)
    with pytest.raises(media.MediaError) as info:
        media.decode_video(short, min_audio_seconds=1.0)
    assert info.value.reason == "audio_too_short"
