"""The openl3-style Python API (re-exported at the package top: `l3.get_audio_embedding`, ...).

    emb, ts = l3.get_audio_embedding(audio, sr, "runs/l3/export")   # [T, D], [T] seconds
    embs, tss = l3.get_audio_embedding([a, b], [44100, 16000], model)  # batched across arrays
    emb = l3.get_image_embedding(image, model)                         # [1, D]
    l3.process_video_file(["a.mp4", "b.mkv"], model, output_dir="emb")

`model` is an `l3-export` directory or an `l3.export.ExportedModel`.
Conventions follow openl3 (`center=True`, `hop_size=0.1`, `batch_size=32`,
timestamps in seconds, `<name>[_<suffix>].npz` outputs beside the input or in
`output_dir`); where they differ (timestamps are always window centres,
drift-free integer offsets, one video `.npz` holding both modalities on one
clock, frames sampled at `fps`), `l3.embeddings.timeline` and README say why.

Bad input: array calls check every input first and raise `InputError` (one)
or `InputErrors` (several, one line each, naming "audio[i]") before any
encoder work; file calls embed every file they can and return the failures.
"""

import os
from typing import Dict, Optional, Sequence, Union

import numpy as np

from l3 import media
from l3.embeddings import files, inputs, runner, timeline

DEFAULT_HOP_SIZE = files.DEFAULT_HOP_SIZE
DEFAULT_BATCH_SIZE = 32


def _as_list(x):
    """(list of inputs, was it a single input)."""
    if isinstance(x, (list, tuple)):
        return list(x), False
    return [x], True


def embed_audio_arrays(model, signals: Sequence[np.ndarray], *, mode: str, hop_size: float,
                       feature: str, batch_size: int):
    """Mono float32 signals at the encoder's rate -> ([float32 [T_i, D]], [int64 starts [T_i]]).

    The windows of all signals share batches (`runner.apply_batched`).
    """
    window, rate = model.clip_samples, model.sample_rate
    hop = timeline.hop_samples(hop_size, rate)
    starts = [timeline.window_starts(len(x), window, hop, mode) for x in signals]
    jobs = ((i, len(s), lambda a, b, x=x, s=s: timeline.slice_windows(x, s[a:b], window))
            for i, (x, s) in enumerate(zip(signals, starts)))
    out = dict(runner.apply_batched(runner.audio_fn(model, feature, batch_size), jobs, batch_size,
                                    runner.feature_dim(model, "audio", feature)))
    return [out[i] for i in range(len(signals))], starts


def get_audio_embedding(audio, sr, model, *, hop_size: float = DEFAULT_HOP_SIZE,
                        center: bool = True, batch_size: int = DEFAULT_BATCH_SIZE,
                        feature: str = "embedding"):
    """Embeddings of 1-s windows of one audio array or a list of them.

    Args:
      audio: float or integer PCM [samples] or [samples, channels] (mixed
        down), or a list of such arrays (their windows share batches).
      sr: sample rate (any; resampled to the encoder's with soxr), or a list.
      model: an export directory or an `ExportedModel`.
      hop_size: seconds between windows (window k at the sample nearest
        k * hop_size; `timeline`).
      center: True: window k is centred on k * hop_size (half a window of
        zeros before the start; the end is padded so every sample is in a
        window), as openl3. False: windows start at the first sample and
        only whole windows are taken.
      feature: "embedding" (D = export.json's embedding_dim) or
        "conv4_2_pooled" (the transfer features, audio_transfer_dim).
    Returns:
      (float32 [T, D], float64 [T] window-centre seconds), or two lists for a
      list input. Audio shorter than one window gives one zero-padded window
      and a `ShortAudioWarning`.
    Raises:
      InputError / InputErrors naming each bad array (empty, NaN, bad shape,
      bad rate); ValueError for bad options.
    """
    model = runner.load_model(model)
    runner.check_feature(feature)
    batch_size = runner.check_batch_size(batch_size)
    if center not in (True, False):
        raise ValueError(f"center must be True or False, got {center!r}")
    timeline.hop_samples(hop_size, model.sample_rate)
    arrays, single = _as_list(audio)
    rates = inputs.optional_list(sr, len(arrays), "sr")
    names = inputs.names("audio", len(arrays), single)
    signals, errors = [], []
    for x, rate, name in zip(arrays, rates, names):
        try:
            signals.append(inputs.prepare_audio(x, rate, model.sample_rate, name))
        except inputs.InputError as e:
            errors.append(e)
    inputs.raise_all(errors)
    for x, name in zip(signals, names):
        inputs.warn_if_short(len(x), model.clip_samples, model.sample_rate, name)
    embs, starts = embed_audio_arrays(model, signals, mode="centered" if center else "start",
                                      hop_size=hop_size, feature=feature, batch_size=batch_size)
    times = [timeline.timestamps(s, model.clip_samples, model.sample_rate) for s in starts]
    return (embs[0], times[0]) if single else (embs, times)


def get_image_embedding(images, model, *, frame_rate: Optional[Union[float, Sequence]] = None,
                        batch_size: int = DEFAULT_BATCH_SIZE, feature: str = "embedding"):
    """Embeddings of images: one [H, W(, C)], a batch [N, H, W, C], or a list of those.

    Each image is shown to the encoder as at evaluation: smaller side to the
    preset's resize side (256 for the paper's 224 crops), central crop.
    uint8 / uint16 or float in [0, 1]; grey is replicated, alpha dropped.

    Returns:
      float32 [N, D] (N = 1 for one image), or a list for a list input; with
      `frame_rate` (a number or one per input), also timestamps i / frame_rate
      (float64 [N]), as openl3.
    Raises:
      InputError / InputErrors naming each bad input ("images[i]").
    """
    model = runner.load_model(model)
    runner.check_feature(feature)
    batch_size = runner.check_batch_size(batch_size)
    arrays, single = _as_list(images)
    names = inputs.names("images", len(arrays), single)
    rates = inputs.optional_list(frame_rate, len(arrays), "frame_rate")
    for r in rates:
        if r is not None and not (isinstance(r, (int, float, np.number)) and r > 0):
            raise ValueError(f"frame_rate must be a positive number, got {r!r}")
    stacks, errors = [], []
    for x, name in zip(arrays, names):
        try:
            stacks.append(inputs.check_pixels(inputs.image_stack(x, name), name))
        except inputs.InputError as e:
            errors.append(e)
    inputs.raise_all(errors)
    side, size = files.resize_side(model), model.image_size

    def rows(stack, name, a, b):
        rgb = inputs.to_unit_rgb(stack[a:b], name)
        return np.stack([inputs.eval_view(im, side, size) for im in rgb])

    jobs = ((i, len(s), lambda a, b, s=s, n=n: rows(s, n, a, b))
            for i, (s, n) in enumerate(zip(stacks, names)))
    out = dict(runner.apply_batched(runner.image_fn(model, feature, batch_size), jobs, batch_size,
                                    runner.feature_dim(model, "vision", feature)))
    embs = [out[i] for i in range(len(stacks))]
    if all(r is None for r in rates):
        return embs[0] if single else embs
    times = [None if r is None else np.arange(len(e), dtype=np.float64) / float(r)
             for e, r in zip(embs, rates)]
    return (embs[0], times[0]) if single else (embs, times)


def output_path(path: str, output_dir: Optional[str], suffix: Optional[str]) -> str:
    """openl3's naming: `<output_dir or the input's folder>/<name without extension>[_<suffix>].npz`."""
    base = os.path.splitext(os.path.basename(path))[0]
    folder = output_dir if output_dir else os.path.dirname(os.path.abspath(path))
    return os.path.join(folder, base + (f"_{suffix}" if suffix else "") + ".npz")


def _process(kind: str, paths, model, output_dir, suffix, overwrite, opts: files.Options,
             progress: bool) -> Dict:
    path_list = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike))
                                        else paths)]
    items, existing, failed = [], [], []
    for p in path_list:
        out = output_path(p, output_dir, suffix)
        if not os.path.exists(p):
            failed.append(files.skip_record(os.path.abspath(p), media.MediaError(
                "not_found", f"{p} does not exist")))
        elif os.path.exists(out) and not overwrite:
            existing.append(out)
        else:
            items.append((os.path.abspath(p), out, kind))
    outputs, failures = files.run(model, items, opts, progress=progress)
    return {"outputs": outputs, "existing": existing, "failed": failed + failures}


def process_audio_file(paths, model, *, output_dir: Optional[str] = None,
                       suffix: Optional[str] = None, overwrite: bool = False,
                       hop_size: float = DEFAULT_HOP_SIZE, center: bool = True,
                       batch_size: int = DEFAULT_BATCH_SIZE, feature: str = "embedding",
                       max_seconds: Optional[float] = None, workers: int = 2,
                       progress: bool = False) -> Dict:
    """Audio file(s) (any format FFmpeg reads) -> `.npz` with `embedding` and `timestamps`.

    Windows and timestamps as `get_audio_embedding`; windows of short files
    share encoder batches. Existing outputs are kept unless `overwrite`.
    Returns {"outputs": [written], "existing": [kept], "failed": [{"path",
    "reason", "error"}]}: a bad file is listed there (and logged), the others
    are embedded.
    """
    opts = files.Options(hop_size=hop_size, center=center, audio_feature=feature,
                         batch_size=batch_size, max_seconds=max_seconds, workers=workers)
    return _process("audio", paths, model, output_dir, suffix, overwrite, opts, progress)


def process_image_file(paths, model, *, output_dir: Optional[str] = None,
                       suffix: Optional[str] = None, overwrite: bool = False,
                       batch_size: int = DEFAULT_BATCH_SIZE, feature: str = "embedding",
                       workers: int = 2, progress: bool = False) -> Dict:
    """Image file(s) -> `.npz` with `embedding` [1, D] (and `timestamps` [0.0]); as `process_audio_file`."""
    opts = files.Options(image_feature=feature, batch_size=batch_size, workers=workers)
    return _process("image", paths, model, output_dir, suffix, overwrite, opts, progress)


def process_video_file(paths, model, *, output_dir: Optional[str] = None,
                       suffix: Optional[str] = None, overwrite: bool = False,
                       hop_size: float = DEFAULT_HOP_SIZE, center: bool = True,
                       fps: float = files.DEFAULT_FPS, batch_size: int = DEFAULT_BATCH_SIZE,
                       audio_feature: str = "embedding", image_feature: str = "embedding",
                       max_seconds: Optional[float] = None, workers: int = 2,
                       progress: bool = False) -> Dict:
    """Video file(s) -> one `.npz` each with audio and image embeddings on one clock.

    Frames are sampled at `fps` (each keeps its own presentation time) and
    the audio track is windowed as `get_audio_embedding`; the file also says,
    for each frame, which audio windows contain it (`image_audio_windows`,
    `image_audio_index`; `l3.embeddings.files`). A video without sound has
    0 audio windows. Returns as `process_audio_file`.
    """
    opts = files.Options(hop_size=hop_size, center=center, fps=fps, audio_feature=audio_feature,
                         image_feature=image_feature, batch_size=batch_size,
                         max_seconds=max_seconds, workers=workers)
    return _process("video", paths, model, output_dir, suffix, overwrite, opts, progress)


__all__ = ["get_audio_embedding", "get_image_embedding", "process_audio_file",
           "process_image_file", "process_video_file", "embed_audio_arrays", "output_path"]
