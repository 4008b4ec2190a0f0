"""Batched feature extraction from clips in memory or audio files, and the on-disk feature cache.

Every clip becomes `num_subclips` equally spaced 1 s subclips
(`l3.eval.transfer.subclips`), run through an `Encoder` in batches of several
clips: features are float32 [n_clips, num_subclips, P].
"""

import concurrent.futures
import hashlib
import json
import logging
import os
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import soxr
from tqdm import tqdm

from l3.core import fileio
from l3 import media
from l3.eval.transfer.encoders import Encoder
from l3.eval.transfer.protocol_config import SvmProtocolConfig
from l3.eval.transfer.subclips import extract_subclips

DEFAULT_BATCH_CLIPS = 8  # clips gathered before an encoder call


class _SubclipBatcher:
    """Collects subclips of many clips and runs the encoder on full batches."""

    def __init__(self, encoder: Encoder, num_subclips: int, batch_clips: int):
        self.encoder, self.num_subclips, self.batch_clips = encoder, num_subclips, batch_clips
        self.pending: List[np.ndarray] = []
        self.features: List[np.ndarray] = []

    def add(self, waveform: np.ndarray) -> None:
        self.pending.append(
            extract_subclips(waveform, self.encoder.clip_samples, self.num_subclips))
        if len(self.pending) >= self.batch_clips:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            f = self.encoder.fn(np.concatenate(self.pending))
            f = np.asarray(f, np.float32).reshape(len(self.pending), self.num_subclips, -1)
            self.features.append(f)
            self.pending = []

    def result(self) -> np.ndarray:
        """float32 [n_clips, num_subclips, P] ([0, num_subclips, 0] without clips)."""
        self.flush()
        if not self.features:
            return np.zeros((0, self.num_subclips, 0), np.float32)
        return np.concatenate(self.features)


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return np.asarray(x, np.float32)
    return soxr.resample(np.asarray(x, np.float32), rate, target, quality="HQ").astype(np.float32)


def clip_features(encoder: Encoder, clips: Sequence[np.ndarray], num_subclips: int, *,
                  sample_rate: Optional[int] = None, batch_clips: int = DEFAULT_BATCH_CLIPS,
                  progress: bool = False) -> np.ndarray:
    """Features of in-memory clips: float32 [n_clips, num_subclips, P].

    `clips` are mono waveforms at `sample_rate` (default: the encoder's);
    they are resampled to the encoder's rate when it differs.
    """
    rate = encoder.sample_rate if sample_rate is None else int(sample_rate)
    batcher = _SubclipBatcher(encoder, num_subclips, batch_clips)
    for clip in _progress(clips, progress, "features"):
        batcher.add(_resample(clip, rate, encoder.sample_rate))
    return batcher.result()


def file_features(encoder: Encoder, paths: Sequence[str], num_subclips: int, *, workers: int = 2,
                  batch_clips: int = DEFAULT_BATCH_CLIPS, progress: bool = False) -> np.ndarray:
    """Decodes files (any format, mixed to mono, resampled) and extracts features.

    float32 [len(paths), num_subclips, P]. Decoding runs in `workers` threads,
    at most a few clips ahead of the encoder. Raises `l3.media.MediaError`
    (with the path) for a file that cannot be decoded: a benchmark must not
    silently drop clips.
    """
    def decode(path):
        audio, _ = media.decode_audio(path, sample_rate=encoder.sample_rate)
        return audio

    batcher = _SubclipBatcher(encoder, num_subclips, batch_clips)
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        for audio in _progress(_bounded_map(pool, decode, paths, 2 * max(1, workers) + batch_clips),
                               progress, "features", total=len(paths)):
            batcher.add(audio)
    return batcher.result()


def _bounded_map(pool, fn, items: Sequence, window: int):
    """`pool.map` in order, keeping at most `window` items in flight (bounded memory)."""
    futures, it = [], iter(items)
    for item in it:
        futures.append(pool.submit(fn, item))
        if len(futures) >= window:
            break
    while futures:
        yield futures.pop(0).result()
        for item in it:
            futures.append(pool.submit(fn, item))
            break


def _progress(items, enabled: bool, desc: str, total: Optional[int] = None):
    return tqdm(items, desc=desc, total=total, unit="clip") if enabled else items


def cached_features(cache_dir: Optional[str], name: str, encoder: Encoder, key: dict,
                    compute: Callable[[], np.ndarray]) -> Tuple[np.ndarray, bool]:
    """`compute()`'s features, stored in `cache_dir/<name>-<hash>.npy` and reused.

    The hash covers the encoder's weights (`fingerprint`) and `key` (file
    list, subclips, ...). No cache when `cache_dir` is None or the encoder has
    no fingerprint. Returns (features, loaded_from_cache).
    """
    if not cache_dir or not encoder.fingerprint:
        return compute(), False
    digest = hashlib.sha1(json.dumps({"encoder": encoder.fingerprint, **key},
                                     sort_keys=True).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"{name}-{digest}.npy")
    if os.path.exists(path):
        logging.info("features from cache %s", path)
        return np.load(path), True
    features = compute()
    with fileio.atomic_write(path, "wb") as f:
        np.save(f, features)
    return features, False


def cached_file_features(encoder: Encoder, name: str, paths: Sequence[str],
                         config: SvmProtocolConfig) -> Tuple[np.ndarray, bool]:
    """`file_features` of `paths` through `config.cache_dir` (keyed by base names and subclips).

    Returns (float32 [len(paths), num_subclips, P], loaded_from_cache).
    """
    num_subclips = config.subclips()
    return cached_features(
        config.cache_dir, name, encoder,
        {"files": [os.path.basename(p) for p in paths], "num_subclips": num_subclips},
        lambda: file_features(encoder, paths, num_subclips, workers=config.workers,
                              progress=config.progress))
