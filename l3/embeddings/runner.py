"""Running an exported encoder over many inputs in shared batches.

`apply_batched` cuts the rows of many inputs (audio windows, prepared images)
into batches of `batch_size` that cross input boundaries, so 100 clips of
0.5 s cost 4 encoder calls at batch 32, not 100; rows are built one batch at
a time (an hour of audio never exists as 36 000 windows in memory).

`load_model` resolves the `model` argument of every API function: an
`l3-export` directory (loaded once and cached per directory and export.json
version) or an already loaded `l3.export.ExportedModel`. Sizes come from
export.json (`sample_rate`, `clip_samples`, `image_size`, the feature
widths), so any encoder an export holds works, whatever its front end.
"""

import collections
import os
from typing import Callable, Dict, Iterable, Iterator, Tuple

import numpy as np

FEATURES = ("embedding", "conv4_2_pooled")
_CACHE: Dict[Tuple[str, int], object] = {}
_CACHE_SIZE = 4


def load_model(model):
    """An export directory (str / PathLike) or a loaded ExportedModel -> ExportedModel."""
    if isinstance(model, (str, os.PathLike)):
        from l3.export import writer as export  # TensorFlow: imported on the first embedding call, not with l3
        path = os.path.realpath(os.fspath(model))
        info = os.path.join(path, export.EXPORT_JSON)
        key = (path, os.stat(info).st_mtime_ns if os.path.exists(info) else 0)
        if key not in _CACHE:
            loaded = export.ExportedModel(path)  # raises FileNotFoundError with a hint
            while len(_CACHE) >= _CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = loaded
        return _CACHE[key]
    if all(hasattr(model, a) for a in ("embed_audio", "embed_images", "sample_rate",
                                       "clip_samples", "image_size", "info")):
        return model
    raise TypeError(f"model must be an l3-export directory or an l3.export.ExportedModel, "
                    f"got {type(model).__name__}")


def check_feature(feature: str, flag: str = "feature") -> str:
    if feature not in FEATURES:
        raise ValueError(f"{flag} must be one of {FEATURES}, got {feature!r}")
    return feature


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def feature_dim(model, modality: str, feature: str) -> int:
    """Width of `feature` ("embedding" / "conv4_2_pooled") for "audio" or "vision", from export.json."""
    info = model.info
    if feature == "embedding":
        return int(info["embedding_dim"])
    return int(info["audio_transfer_dim" if modality == "audio" else "vision_transfer_dim"])


# A job: (key, number of rows, rows(i, j) -> array [j - i, ...]).
Job = Tuple[object, int, Callable[[int, int], np.ndarray]]


def apply_batched(fn: Callable[[np.ndarray], np.ndarray], jobs: Iterable[Job], batch_size: int,
                  width: int) -> Iterator[Tuple[object, np.ndarray]]:
    """Runs `fn` over the rows of every job in batches that span jobs.

    Args:
      fn: rows [b, ...] -> float [b, width].
      jobs: consumed lazily, in order.
    Yields:
      (key, float32 [rows, width]) per job, in job order, as soon as all its
      rows are computed (a job of 0 rows gives [0, width]).
    """
    pending = collections.deque()  # [key, parts, rows still to compute]
    batch, owners, filled = [], [], 0

    def flush():
        nonlocal batch, owners, filled
        if filled:
            out = np.asarray(fn(np.concatenate(batch)), np.float32)
            at = 0
            for rec, count in owners:
                rec[1].append(out[at:at + count])
                rec[2] -= count
                at += count
        batch, owners, filled = [], [], 0

    def ready():
        while pending and pending[0][2] == 0:
            key, parts, _ = pending.popleft()
            yield key, (np.concatenate(parts) if parts else np.zeros((0, width), np.float32))

    for key, n, rows in jobs:
        rec = [key, [], int(n)]
        pending.append(rec)
        i = 0
        while i < n:
            take = min(batch_size - filled, n - i)
            batch.append(rows(i, i + take))
            owners.append((rec, take))
            filled += take
            i += take
            if filled == batch_size:
                flush()
                yield from ready()
        if filled == 0:
            yield from ready()
    flush()
    yield from ready()


def audio_fn(model, feature: str, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """Windows float32 [b, clip_samples] -> features [b, width]."""
    return lambda w: model.embed_audio(w, batch_size=batch_size)[feature]


def image_fn(model, feature: str, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """Images float32 [b, S, S, 3] in [0, 1] -> features [b, width]."""
    return lambda x: model.embed_images(x, batch_size=batch_size)[feature]
