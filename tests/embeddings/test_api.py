"""The openl3-style API: windows, timestamps, rates, channels, batching, images, bad input.

References are written here from the conventions, in numpy (openl3's
published window rule; soxr + channel mean; the encoder applied to
hand-sliced windows), so a wrong hop, centring or off-by-one window fails.
"""

import fractions
import os
import subprocess
import sys

import numpy as np
import pytest
import soxr

import l3
from l3.core import presets
from l3.embeddings import inputs, timeline
from tests.fixtures.embeddings import Counting, make_small_export, noise

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RATE = presets.SMALL.sample_rate  # 16 kHz
WINDOW = presets.SMALL.clip_samples
D = presets.SMALL.embedding_dim
TOL = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_small_export(tmp_path_factory)


def openl3_windows(x: np.ndarray, window: int, hop: int):
    """openl3's center=True rule, from its description: pad window/2 zeros in front, then
    pad the end so every sample is in a window; frames every `hop`; stamps k * hop."""
    padded = np.concatenate([np.zeros(window // 2), x])
    count = 1 if len(padded) <= window else 1 + int(np.ceil((len(padded) - window) / hop))
    padded = np.concatenate([padded, np.zeros(max(0, (count - 1) * hop + window - len(padded)))])
    frames = np.stack([padded[k * hop:k * hop + window] for k in range(count)])
    return frames.astype(np.float32), np.arange(count) * hop


def direct(model, windows, feature="embedding"):
    return model.embed_audio(np.asarray(windows, np.float32))[feature]


def test_import_l3_is_cheap_and_resolves_the_api_lazily():
    code = ("import sys, l3; f = l3.get_audio_embedding; g = l3.process_video_file; "
            "assert callable(f) and callable(g); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith(('tensorflow', 'keras')))[:3]; "
            "print(sorted(n for n in dir(l3) if n.startswith(('get_', 'process_'))))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "'get_audio_embedding', 'get_image_embedding', 'process_audio_file'" in proc.stdout
    with pytest.raises(AttributeError):
        l3.no_such_function  # noqa: B018


@pytest.mark.parametrize("num_samples", [0, 1, 4799, 8000, 8001, 16000, 17600, 24000, 24001,
                                         37123])
def test_window_rules_match_brute_force(num_samples):
    window, hop = WINDOW, 1600
    # centered == openl3's rule (starts in original sample coordinates).
    _, openl3_starts = openl3_windows(np.zeros(num_samples), window, hop)
    np.testing.assert_array_equal(
        timeline.window_starts(num_samples, window, hop, "centered"), openl3_starts - window // 2)
    # start: every whole window from sample 0 (one padded window if none fits).
    fit = [s for s in range(0, num_samples - window + 1, hop)] or [0]
    np.testing.assert_array_equal(timeline.window_starts(num_samples, window, hop, "start"), fit)
    # hear: a centre on every hop inside the clip.
    centres = [c for c in range(0, max(num_samples, 1), hop)]
    np.testing.assert_array_equal(timeline.window_starts(num_samples, window, hop, "hear"),
                                  np.array(centres) - window // 2)


@pytest.mark.parametrize("hop_size,rate", [(0.1, 48000), (0.0232, 48000), (0.05, 16000),
                                           (1 / 3, 16000)])
def test_one_hour_timeline_has_exact_timestamps(hop_size, rate):
    n = 3600 * rate
    hop = timeline.hop_samples(hop_size, rate)
    starts = timeline.window_starts(n, rate, hop, "centered")
    times = timeline.timestamps(starts, rate, rate)
    k = len(starts) - 1
    # Reference in exact rationals: grid point nearest k * hop_size seconds.
    exact_grid = fractions.Fraction(k) * fractions.Fraction(hop_size) * rate
    g = int(exact_grid + fractions.Fraction(1, 2))  # floor(x + 1/2)
    assert starts[-1] == g - rate // 2
    assert times[-1] == float(fractions.Fraction(g, rate))  # bit-exact, no accumulated error
    assert abs(times[-1] - k * hop_size) <= 0.5 / rate + 1e-9  # within half a sample of k * hop
    assert starts[-1] + rate >= n > starts[-2] + rate  # the last window is the first to reach the end
    gaps = np.diff(starts)
    assert set(np.unique(gaps)) <= {int(np.floor(hop)), int(np.ceil(hop))}


def test_one_hour_signal_last_embedding_and_timestamp(model):
    """A real hour at 16 kHz through the API: the last window is where its stamp says."""
    rng = np.random.default_rng(7)
    x = 0.1 * rng.standard_normal(3600 * RATE, dtype=np.float32)
    hop_size = 7.00003  # 112000.48 samples: not a whole number
    emb, ts = l3.get_audio_embedding(x, RATE, model, hop_size=hop_size, batch_size=128)
    k = len(ts) - 1
    g = int(fractions.Fraction(k) * fractions.Fraction(hop_size) * RATE + fractions.Fraction(1, 2))
    assert ts[-1] == float(fractions.Fraction(g, RATE))
    assert g - WINDOW // 2 + WINDOW >= len(x) > g - WINDOW // 2 + WINDOW - 112001
    ref = np.zeros(WINDOW, np.float32)
    lo = g - WINDOW // 2
    ref[:len(x) - lo] = x[lo:]
    np.testing.assert_allclose(emb[-1], direct(model, ref[None])[0], **TOL)
    np.testing.assert_allclose(ts[:3], [0.0, 7.0, 14.0], atol=1 / RATE)


@pytest.mark.parametrize("center", [True, False])
def test_audio_embedding_matches_hand_sliced_windows(model, center):
    x = noise(2.37, RATE, seed=1).astype(np.float32)
    hop = 1600
    for feature in ("embedding", "conv4_2_pooled"):
        emb, ts = l3.get_audio_embedding(x, RATE, model, center=center, batch_size=5,
                                         feature=feature)
        if center:
            frames, starts = openl3_windows(x, WINDOW, hop)
            ref_ts = starts / RATE  # openl3: k * hop_size
        else:
            starts = np.arange(0, len(x) - WINDOW + 1, hop)
            frames = np.stack([x[s:s + WINDOW] for s in starts])
            ref_ts = (starts + WINDOW / 2) / RATE  # window centres
        assert emb.shape == (len(frames), model.info[
            "embedding_dim" if feature == "embedding" else "audio_transfer_dim"])
        np.testing.assert_allclose(ts, ref_ts, atol=1e-12)
        np.testing.assert_allclose(emb, direct(model, frames, feature), **TOL)
    # 1 + ceil((2.37 + 0.5 - 1) / 0.1) centred windows; 1 + floor((2.37 - 1) / 0.1) whole ones.
    assert len(l3.get_audio_embedding(x, RATE, model, center=True)[1]) == 20
    assert len(l3.get_audio_embedding(x, RATE, model, center=False)[1]) == 14


@pytest.mark.parametrize("sr", [16000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_any_rate_and_channel_count(model, sr, channels):
    x = noise(1.6, sr, channels=channels, seed=2)
    emb, ts = l3.get_audio_embedding(x, sr, model)
    mono = x.mean(axis=1) if channels == 2 else x
    ref = mono.astype(np.float32) if sr == RATE else soxr.resample(
        mono.astype(np.float32), sr, RATE, quality="HQ")
    frames, starts = openl3_windows(ref, WINDOW, 1600)
    np.testing.assert_allclose(ts, starts / RATE, atol=1e-12)
    np.testing.assert_allclose(emb, direct(model, frames), **TOL)
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)  # integer PCM is scaled
    emb16, _ = l3.get_audio_embedding(pcm, sr, model)
    np.testing.assert_allclose(emb16, l3.get_audio_embedding(pcm / 32768.0, sr, model)[0], **TOL)


def test_list_input_is_batched_across_arrays(model):
    counting = Counting(model)
    clips = [noise(0.9, 16000, seed=3), noise(1.25, 44100, channels=2, seed=4),
             noise(2.0, 48000, seed=5)]
    rates = [16000, 44100, 48000]
    with pytest.warns(inputs.ShortAudioWarning, match=r"audio\[0\]: 0\.900 s"):
        embs, tss = l3.get_audio_embedding(clips, rates, counting, batch_size=8)
    with pytest.warns(inputs.ShortAudioWarning):
        singles = [l3.get_audio_embedding(c, r, model) for c, r in zip(clips, rates)]
    assert [len(t) for t in tss] == [len(s[1]) for s in singles] == [5, 9, 16]
    for (e, t), (e1, t1) in zip(zip(embs, tss), singles):
        np.testing.assert_allclose(e, e1, **TOL)
        np.testing.assert_array_equal(t, t1)
    assert counting.audio_calls == [8, 8, 8, 6]  # 30 windows in batches that cross arrays


def test_short_audio_is_padded_with_a_warning(model):
    x = noise(0.3, 22050, seed=6)
    with pytest.warns(inputs.ShortAudioWarning, match=r"audio: 0\.300 s .* zero-padded"):
        emb, ts = l3.get_audio_embedding(x, 22050, model)
    ref = soxr.resample(x.astype(np.float32), 22050, RATE, quality="HQ")
    frames, _ = openl3_windows(ref, WINDOW, 1600)
    assert emb.shape == (1, D) and ts.tolist() == [0.0]
    np.testing.assert_allclose(emb, direct(model, frames), **TOL)


def test_bad_audio_is_named_and_nothing_runs(model):
    counting = Counting(model)
    nan = noise(1.0, RATE)
    nan[100:103] = np.nan
    bad = [np.zeros(0), nan, np.zeros((2, 3, 4)), np.zeros((2, 16000)), noise(1.0, RATE)]
    with pytest.raises(inputs.InputErrors) as info:
        l3.get_audio_embedding(bad, [RATE] * 4 + [0], counting)
    reasons = {e.name: e.reason for e in info.value.errors}
    assert reasons == {"audio[0]": "empty_audio", "audio[1]": "non_finite",
                       "audio[2]": "bad_shape", "audio[3]": "bad_shape",
                       "audio[4]": "bad_sample_rate"}
    assert "audio[1]: non_finite: 3 NaN/inf samples" in str(info.value)
    assert counting.audio_calls == []
    with pytest.raises(inputs.InputError, match=r"^audio: empty_audio"):
        l3.get_audio_embedding(np.zeros(0, np.float32), RATE, model)
    with pytest.raises(ValueError, match="hop_size"):
        l3.get_audio_embedding(noise(1.0, RATE), RATE, model, hop_size=0)
    with pytest.raises(ValueError, match="feature"):
        l3.get_audio_embedding(noise(1.0, RATE), RATE, model, feature="fc")
    with pytest.raises(TypeError, match="l3-export directory"):
        l3.get_audio_embedding(noise(1.0, RATE), RATE, object())


def _eval_view(image_u8, model):
    """Reference view: l3.ops.image.eval_image (the evaluation transform) of the RGB image."""
    from l3.ops import image as image_lib
    return np.asarray(image_lib.eval_image(image_u8, resize_side=presets.SMALL.resize_side,
                                           image_size=model.image_size))


def test_image_embedding_formats(model):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)
    ref = model.embed_images(_eval_view(rgb, model)[None])["embedding"]
    emb = l3.get_image_embedding(rgb, model)
    assert emb.shape == (1, D)
    np.testing.assert_allclose(emb, ref, **TOL)
    rgba = np.concatenate([rgb, rng.integers(0, 256, (80, 100, 1), dtype=np.uint8)], -1)
    np.testing.assert_allclose(l3.get_image_embedding(rgba, model), ref, **TOL)  # alpha dropped
    np.testing.assert_allclose(l3.get_image_embedding(rgb / 255.0, model), ref, rtol=1e-3,
                               atol=1e-4)
    grey = rgb[..., 0]
    grey_ref = model.embed_images(_eval_view(np.repeat(grey[..., None], 3, -1), model)[None])
    for g in (grey, grey[..., None]):
        np.testing.assert_allclose(l3.get_image_embedding(g, model), grey_ref["embedding"], **TOL)
    assert not np.allclose(grey_ref["embedding"], ref)
    # A batch with timestamps, and a list of inputs sharing batches.
    batch = rng.integers(0, 256, (5, 72, 90, 3), dtype=np.uint8)
    counting = Counting(model)
    embs, tss = l3.get_image_embedding([batch, rgb], counting, frame_rate=[2.0, 10.0],
                                       batch_size=4, feature="conv4_2_pooled")
    assert counting.image_calls == [4, 2]
    assert embs[0].shape == (5, presets.SMALL.vision_transfer_dim)
    np.testing.assert_allclose(tss[0], [0.0, 0.5, 1.0, 1.5, 2.0])
    np.testing.assert_allclose(tss[1], [0.0])
    ref_batch = model.embed_images(np.stack([_eval_view(b, model) for b in batch]))
    np.testing.assert_allclose(embs[0], ref_batch["conv4_2_pooled"], **TOL)


def test_bad_images_are_named(model):
    nan = np.full((40, 40, 3), 0.5)
    nan[3, 3, 1] = np.nan
    bad = [np.zeros((0, 10, 3), np.uint8), nan, np.full((40, 40, 3), 1.5),
           np.zeros((40, 40, 3), np.int32), np.zeros((40, 40, 2), np.uint8),
           np.zeros((40, 40, 3), np.uint8)]
    with pytest.raises(inputs.InputErrors) as info:
        l3.get_image_embedding(bad, model)
    assert {e.name: e.reason for e in info.value.errors} == {
        "images[0]": "empty_image", "images[1]": "non_finite", "images[2]": "out_of_range",
        "images[3]": "bad_dtype", "images[4]": "bad_shape"}


def test_very_large_image_is_reduced_first(model):
    # 1200 x 1500: smaller side > 4 x the resize side (72), so it is box-averaged by 8 first.
    yy, xx = np.mgrid[0:1200, 0:1500]
    big = np.stack([(xx * 255 // 1500), (yy * 255 // 1200), ((xx + yy) % 256)], -1).astype(np.uint8)
    view = inputs.eval_view(inputs.to_unit_rgb(big[None], "big")[0], 72, 64)
    assert view.shape == (64, 64, 3)
    assert np.abs(view - _eval_view(big, model)).mean() < 0.01  # the same picture
    emb = l3.get_image_embedding(big, model)
    np.testing.assert_allclose(emb, model.embed_images(view[None])["embedding"], **TOL)
