"""l3.hear against the HEAR 2021 API.

`hearvalidator` (2021.0.6, the validator on the package index) declares
Python < 3.9 and imports both TensorFlow and PyTorch, so it cannot be a CI
dependency here (Python 3.11, no torch: its wheel brings ~2.5 GB of CUDA
libraries). It was run by hand on this module (see WORKSPACE_NOTES.md);
`test_passes_the_validators_checks` re-implements every check its
TensorFlow path makes, on the same inputs, and the two warnings it prints
(timestamps must start within one hop of 0 and end within one hop of the
clip's end) are made hard failures here. The other tests compare the
embeddings with the encoder applied to hand-cut windows.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from l3.embeddings import hear
from l3.core import presets
from l3.embeddings import inputs
from tests.fixtures.embeddings import Counting, make_small_export

RATE = presets.SMALL.sample_rate
WINDOW = presets.SMALL.clip_samples
TOL = dict(rtol=1e-4, atol=1e-5)
ACCEPTABLE_SAMPLE_RATES = (16000, 22050, 32000, 44100, 48000)  # the validator's list


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return make_small_export(tmp_path_factory)


@pytest.fixture(scope="module")
def model(exported):
    return hear.load_model(exported.export_dir)


def _white_noise(num_audio, length, rate):
    """The validator's test input: uniform noise in [-1, 1], int(length * rate) samples."""
    return tf.random.uniform((num_audio, int(length * rate))) * 2 - 1.0


def test_passes_the_validators_checks(model):
    for name in ("load_model", "get_timestamp_embeddings", "get_scene_embeddings"):
        assert callable(getattr(hear, name))
    assert isinstance(model, tf.Module)
    assert model.sample_rate in ACCEPTABLE_SAMPLE_RATES
    assert isinstance(model.scene_embedding_size, int)
    assert isinstance(model.timestamp_embedding_size, int)
    for num_audio, length in ((2, 1.07), (2, 1.98), (2, 4.0)):
        emb, ts = hear.get_timestamp_embeddings(_white_noise(num_audio, length, RATE), model)
        assert emb.dtype == tf.float32
        emb, ts = emb.numpy(), ts.numpy()
        assert emb.ndim == 3 and ts.ndim == 2 and emb.shape[0] == num_audio
        assert emb.shape[:2] == ts.shape and emb.shape[2] == model.timestamp_embedding_size
        diff = np.diff(ts)
        assert diff.max() <= 50.0  # ms
        assert np.abs(diff - diff.mean()).max() <= 1.0
        assert ts.max() <= 1000 * length
        # The validator's two warnings, as failures:
        assert ts.min() <= diff.mean()
        assert ts.max() >= 1000 * length - diff.mean() and ts.max() >= 1000 * length - 50
    scene = hear.get_scene_embeddings(_white_noise(4, 2.74, RATE), model)
    assert scene.dtype == tf.float32
    assert scene.numpy().shape == (4, model.scene_embedding_size)


def _centred_windows(clip, centres):
    padded = np.concatenate([np.zeros(WINDOW // 2), clip, np.zeros(WINDOW)]).astype(np.float32)
    return np.stack([padded[c:c + WINDOW] for c in centres])  # padded index c = centre - W/2


def test_timestamp_and_scene_embeddings_match_hand_cut_windows(exported, model):
    rng = np.random.default_rng(0)
    clips = (0.3 * rng.standard_normal((2, int(1.98 * RATE)))).astype(np.float32)
    counting = Counting(exported)
    emb, ts = hear.get_timestamp_embeddings(clips, hear.L3HearModel(counting))
    emb, ts = emb.numpy(), ts.numpy()
    centres = np.arange(0, clips.shape[1], 800)  # every 50 ms at 16 kHz, inside the clip
    assert len(centres) == 40
    np.testing.assert_allclose(ts, np.broadcast_to(centres / RATE * 1000, (2, 40)), atol=1e-3)
    assert counting.audio_calls == [64, 16]  # 80 windows of two clips share batches
    for i in range(2):
        ref = exported.embed_audio(_centred_windows(clips[i], centres))["conv4_2_pooled"]
        np.testing.assert_allclose(emb[i], ref, **TOL)
    scene = hear.get_scene_embeddings(clips, model).numpy()
    starts = np.arange(0, clips.shape[1] - WINDOW + 1, 8000)  # whole windows every 0.5 s
    assert len(starts) == 2
    for i in range(2):
        feats = exported.embed_audio(np.stack([clips[i][s:s + WINDOW] for s in starts]))
        np.testing.assert_allclose(scene[i], feats["conv4_2_pooled"].mean(0), **TOL)
    # A clip shorter than one window: one zero-padded window for the scene.
    short = clips[:, :5000]
    ref = exported.embed_audio(np.pad(short, ((0, 0), (0, WINDOW - 5000))))["conv4_2_pooled"]
    np.testing.assert_allclose(hear.get_scene_embeddings(short, model).numpy(), ref, **TOL)


def test_feature_choice_load_paths_and_bad_input(exported, tmp_path):
    m = hear.load_model(os.path.join(exported.export_dir, "export.json"), feature="embedding")
    assert m.timestamp_embedding_size == m.scene_embedding_size == presets.SMALL.embedding_dim
    assert hear.get_scene_embeddings(np.zeros((1, RATE), np.float32), m).shape == (1, 64)
    with pytest.raises(ValueError, match="l3-export directory"):
        hear.load_model("")
    with pytest.raises(FileNotFoundError, match="l3-export"):
        hear.load_model(str(tmp_path))
    batch = np.zeros((3, RATE), np.float32)
    batch[1, 10] = np.nan
    with pytest.raises(inputs.InputError, match=r"audio\[1\]: non_finite"):
        hear.get_timestamp_embeddings(batch, m)
    with pytest.raises(ValueError, match=r"\[n_sounds, samples\]"):
        hear.get_scene_embeddings(np.zeros(RATE, np.float32), m)


def test_the_real_validator_where_installed(exported, capsys):
    """Runs hearvalidator itself when it and torch are importable (not in CI: see the docstring)."""
    pytest.importorskip("torch")
    validate = pytest.importorskip("hearvalidator.validate")
    validate.ValidateModel("l3.hear", exported.export_dir)()
    assert "Checking get_scene_embeddings" in capsys.readouterr().out
