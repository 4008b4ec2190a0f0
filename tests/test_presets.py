"""Presets: derived sizes and validation."""

import pytest

from l3 import constants as C, presets


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
