"""Presets: derived sizes and validation."""

import pytest

from l3.core import constants as C, presets


def test_paper_preset_is_the_paper():
    p = presets.get_preset("paper")
    assert p.sample_rate == 48000 and p.clip_samples == 48000
    assert (p.stft_window, p.stft_hop, p.fft_length) == (480, 240, 512)
    assert (p.spectrogram_bands, p.spectrogram_frames) == (257, 199)
    assert (p.resize_side, p.image_size) == (256, 224)
    assert p.block_filters == (64, 128, 256, 512) and p.conv1_1_stride == 2
    assert p.vision_conv4_shape == (14, 14, 512) and p.audio_conv4_shape == (16, 12, 512)
    assert (p.vision_transfer_dim, p.audio_transfer_dim) == (8192, 6144)
    assert p.global_batch_size == 256 and p.learning_rate == 1e-4 and p.weight_decay == 1e-5
    assert p.decimation == 1


def test_small_preset_keeps_window_in_seconds():
    p = presets.get_preset("small")
    assert p.stft_window / p.sample_rate == pytest.approx(C.STFT_WINDOW_SECONDS)
    assert p.stft_hop * 2 == p.stft_window
    assert p.decimation == 3 and p.clip_samples == 16000
    assert p.spectrogram_frames == 199 and p.spectrogram_bands == 129
    assert p.sizes()["audio_transfer_dim"] == 768


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        presets.get_preset("huge")


def test_front_end_presets_and_names():
    mel = presets.get_preset("paper", "mel128")
    assert mel.key == "paper-mel128" and mel.name == "paper" and mel.input_repr == "mel128"
    assert presets.get_preset("paper-mel128") == mel
    assert presets.get_preset("paper-mel128", "mel128") == mel
    assert presets.get_preset("paper", "linear") is presets.PAPER
    assert presets.preset_key("small", "mel256") == "small-mel256"
    assert (mel.stft_window, mel.stft_hop, mel.frontend_fft_length) == (480, 240, 2048)
    assert (mel.spectrogram_bands, mel.spectrogram_frames) == (128, 199)
    assert mel.sizes()["preset"] == "paper-mel128" and mel.sizes()["input_repr"] == "mel128"
    assert presets.PAPER.sizes()["preset"] == "paper" and presets.PAPER.sizes()["input_repr"] == "linear"
    small = presets.get_preset("small-mel256")
    assert (small.frontend_fft_length, small.spectrogram_bands) == (1024, 256)
    with pytest.raises(ValueError, match="input_repr"):
        presets.get_preset("paper", "mel64")
    with pytest.raises(ValueError, match="has front end"):
        presets.get_preset("paper-mel128", "mel256")
