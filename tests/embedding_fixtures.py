"""Shared by the embedding API and HEAR tests: a small-preset export and a call-counting proxy."""

import numpy as np

from l3 import presets


_EXPORTS = {}


def make_small_export(tmp_path_factory):
    """An `l3-export` of the small preset with random weights, loaded: ExportedModel.

    Made once per test session (each test module's fixture calls this), under
    the session's temporary folder: an export costs ~10-20 s on 2 cores.
    """
    from l3 import export, model as model_lib
    key = str(tmp_path_factory.getbasetemp())
    if key not in _EXPORTS:
        out = str(tmp_path_factory.mktemp("export") / "export")
        export.export_model(model_lib.build_avc_model(presets.SMALL), presets.SMALL, out)
        _EXPORTS[key] = export.ExportedModel(out)
    return _EXPORTS[key]


class Counting:
    """An ExportedModel stand-in that forwards to the real one and counts encoder calls."""

    def __init__(self, model):
        self.model = model
        self.audio_calls, self.image_calls = [], []  # batch sizes seen

    def __getattr__(self, name):
        return getattr(self.model, name)

    def embed_audio(self, waveforms, batch_size=64):
        self.audio_calls.append(len(waveforms))
        return self.model.embed_audio(waveforms, batch_size=batch_size)

    def embed_images(self, images, batch_size=64):
        self.image_calls.append(len(images))
        return self.model.embed_images(images, batch_size=batch_size)


def noise(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Band-limited-ish test audio: a tone plus noise, float64 [n] or [n, channels]."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    x = 0.3 * np.sin(2 * np.pi * (300 + 50 * seed) * t) + 0.05 * rng.standard_normal(n)
    if channels == 1:
        return x
    return np.stack([x * (1.0 - 0.3 * c) for c in range(channels)], 1)
