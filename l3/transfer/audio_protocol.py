"""The audio transfer protocol of section 3.3, shared by ESC-50 and DCASE.

Per clip (the paper, following Aytar et al.'s SoundNet set-up):

1. `num_subclips` equally spaced 1 s subclips (10 per 5 s ESC-50 clip, 60 per
   30 s DCASE clip): window starts `round(linspace(0, len - window, N))`, so
   the first starts at 0 and the last ends at the clip's end. A clip shorter
   than one window is zero padded at the end (its N subclips are then equal).
2. Each subclip through the exported audio encoder; the feature is
   `conv4_2_pooled`: conv4_2 *before* ReLU max-pooled to 4x3x512 = 6144-D
   (1536-D for the small preset).
3. z-score normalisation with mean and standard deviation fitted on the
   training clips' subclips only (a feature with zero training variance is
   only centred).
4. One-vs-all linear SVMs (`linear_svm.fit_ova_svm`: squared hinge, L2).
   C is chosen from a grid by cross-validation *inside* the training clips:
   stratified group k-fold, where a group is a recording (ESC-50's
   `src_file`, a DCASE clip), so no recording's subclips sit on both sides of
   a CV split; the criterion is the same clip accuracy as the test. The CV
   reuses the z-score fitted on all training clips (the test clips are never
   seen; re-fitting it per inner split would change little and cost a copy).
   The C path is solved in increasing C with warm starts.
5. Clip score = mean of its subclips' decision scores; prediction = argmax;
   accuracy = fraction of test clips predicted right.

The demo and other callers with clips in memory use `evaluate_clips`; the
benchmark front ends (`esc50`, `dcase`) decode files, cache features
(`cached_features`) and call `run_folds` / `train_and_test`.
"""

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from l3.transfer import linear_svm

FEATURE = "conv4_2_pooled"
# C multiplies a sum of n squared hinges of z-scored features with ||x||^2 ~ P
# (6144): C = 1 / P is liblinear's default C = 1 on unit-norm features, so this
# grid spans ~0.06x to 6x of it. Larger C is nearly hard-margin (16k subclips
# in 6144-D are close to separable) and costly: on the ESC-50-sized benchmark
# a cold fit takes 21 / 64 / 262 Hessian products at C = 1e-5 / 1e-4 / 1e-3
# and over a thousand at 1e-2 (benchmarks/bench_transfer_svm.py). Extend the
# grid with --c_grid when the chosen C sits at its top.
DEFAULT_C_GRID = (1e-5, 1e-4, 1e-3)
DEFAULT_INNER_FOLDS = 3
SUBCLIP_SECONDS = 1.0  # the encoder's input: section 2.2

# An encoder function: float32 [m, clip_samples] waveforms -> float32 [m, P] features.
EncoderFn = Callable[[np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------
# Subclips.


def subclip_starts(num_samples: int, clip_samples: int, num_subclips: int) -> np.ndarray:
    """Start samples of `num_subclips` equally spaced windows: int64 [num_subclips].

    The first window starts at 0 and the last ends at `num_samples` (all start
    at 0 when the clip is no longer than one window).
    """
    if num_subclips < 1:
        raise ValueError(f"num_subclips must be >= 1, got {num_subclips}")
    span = max(int(num_samples) - int(clip_samples), 0)
    return np.round(np.linspace(0.0, span, num_subclips)).astype(np.int64)


def extract_subclips(waveform: np.ndarray, clip_samples: int, num_subclips: int) -> np.ndarray:
    """float [samples] -> float32 [num_subclips, clip_samples] (zero padded if short)."""
    x = np.asarray(waveform, np.float32).reshape(-1)
    if len(x) < clip_samples:
        x = np.pad(x, (0, clip_samples - len(x)))
    starts = subclip_starts(len(x), clip_samples, num_subclips)
    return np.stack([x[s:s + clip_samples] for s in starts])


# ----------------------------------------------------------------------------
# Encoders.


@dataclasses.dataclass
class Encoder:
    """An audio feature extractor: `fn` maps float32 [m, clip_samples] at
    `sample_rate` to float32 [m, P]. `description` goes into results."""

    fn: EncoderFn
    sample_rate: int
    clip_samples: int
    description: dict
    fingerprint: str = ""  # identifies the weights, for feature caches ("" = do not cache)


def _file_digest(paths: Iterable[str]) -> str:
    h = hashlib.sha1()
    for path in sorted(paths):
        h.update(os.path.basename(path).encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def exported_encoder(exported, feature: str = FEATURE, batch_size: int = 64) -> Encoder:
    """An `Encoder` from an `l3.export.ExportedModel` or an export directory path."""
    from l3 import export as export_lib  # TensorFlow only when an export is used

    if isinstance(exported, (str, os.PathLike)):
        exported = export_lib.ExportedModel(os.fspath(exported))
    variables = os.path.join(exported.export_dir, export_lib.AUDIO_ENCODER, "variables")
    files = ([os.path.join(variables, f) for f in os.listdir(variables)]
             if os.path.isdir(variables) else [])
    fingerprint = _file_digest(files + [os.path.join(exported.export_dir, export_lib.EXPORT_JSON)])
    info = exported.info
    description = {"export_dir": os.path.abspath(exported.export_dir), "preset": info.get("preset"),
                   "step": info.get("step"), "source_checkpoint": info.get("source_checkpoint"),
                   "feature": feature, "weights_sha1": fingerprint}

    def fn(waveforms: np.ndarray) -> np.ndarray:
        return exported.embed_audio(waveforms, batch_size=batch_size)[feature]

    return Encoder(fn, exported.sample_rate, exported.clip_samples, description,
                   f"{fingerprint}-{feature}")


def as_encoder(encoder, *, sample_rate: Optional[int] = None, clip_samples: Optional[int] = None,
               feature: str = FEATURE, batch_size: int = 64) -> Encoder:
    """Accepts an `Encoder`, an `ExportedModel`, an export directory, or a callable.

    A callable (e.g. a Keras audio encoder from `l3.model.build_encoder`, or a
    numpy function) takes float32 [m, clip_samples] and returns an array
    [m, P] or a dict holding `feature`; it needs `sample_rate` and
    `clip_samples` (default: one second).
    """
    if isinstance(encoder, Encoder):
        return encoder
    if isinstance(encoder, (str, os.PathLike)) or hasattr(encoder, "embed_audio"):
        return exported_encoder(encoder, feature, batch_size)
    if not callable(encoder):
        raise TypeError(f"cannot use {type(encoder).__name__} as an audio encoder")
    if sample_rate is None:
        raise ValueError("a callable encoder needs its sample_rate")
    clip_samples = int(clip_samples or round(SUBCLIP_SECONDS * sample_rate))

    def fn(waveforms: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(waveforms), batch_size):
            y = encoder(waveforms[i:i + batch_size])
            if isinstance(y, dict):
                y = y[feature]
            out.append(np.asarray(y, np.float32).reshape(len(waveforms[i:i + batch_size]), -1))
        return np.concatenate(out)

    name = getattr(encoder, "name", None) or getattr(encoder, "__name__", type(encoder).__name__)
    return Encoder(fn, int(sample_rate), clip_samples, {"callable": str(name), "feature": feature})


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
        self.flush()
        if not self.features:
            return np.zeros((0, self.num_subclips, 0), np.float32)
        return np.concatenate(self.features)


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return np.asarray(x, np.float32)
    import soxr
    return soxr.resample(np.asarray(x, np.float32), rate, target, quality="HQ").astype(np.float32)


def clip_features(encoder: Encoder, clips: Sequence[np.ndarray], num_subclips: int, *,
                  sample_rate: Optional[int] = None, batch_clips: int = 8,
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
                  batch_clips: int = 8, progress: bool = False) -> np.ndarray:
    """Decodes files (any format, mixed to mono, resampled) and extracts features.

    float32 [len(paths), num_subclips, P]. Decoding runs in `workers` threads,
    at most a few clips ahead of the encoder. Raises `l3.media.MediaError`
    (with the path) for a file that cannot be decoded: a benchmark must not
    silently drop clips.
    """
    from l3 import media

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
    if not enabled:
        return items
    from tqdm import tqdm
    return tqdm(items, desc=desc, total=total, unit="clip")


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
    os.makedirs(cache_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".npy.tmp", dir=cache_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, features)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return features, False


# ----------------------------------------------------------------------------
# Normalisation, C selection, one train/test split.


@dataclasses.dataclass
class ZScore:
    """x -> (x - mean) / std, fitted on training subclips only. float32 [P] each."""

    mean: np.ndarray
    std: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        """float [..., P] -> float32 [rows, P] (a new array)."""
        x = np.array(x, np.float32, copy=True).reshape(-1, self.mean.shape[0])
        x -= self.mean
        x /= self.std
        return x


def fit_zscore(x: np.ndarray) -> ZScore:
    """Mean and std over every subclip row of x [..., P] (float64 accumulation)."""
    x = np.asarray(x).reshape(-1, np.shape(x)[-1])
    mean = x.mean(0, dtype=np.float64)
    sq = np.zeros_like(mean)
    for i in range(0, len(x), 4096):  # two passes in row chunks: exact, no [n, P] float64 copy
        d = x[i:i + 4096].astype(np.float64) - mean
        sq += np.einsum("np,np->p", d, d)
    std = np.sqrt(sq / max(len(x), 1))
    std = np.where(std > 1e-6 * max(1.0, float(np.abs(mean).max(initial=0.0))), std, 1.0)
    return ZScore(mean.astype(np.float32), std.astype(np.float32))


def clip_scores(model: linear_svm.OvaSVM, x: np.ndarray, num_subclips: int) -> np.ndarray:
    """Normalised subclip features [n * S, P] -> clip scores [n, K] (mean over subclips)."""
    scores = model.decision_function(x)
    return scores.reshape(-1, num_subclips, scores.shape[1]).mean(1)


def inner_splits(labels: np.ndarray, groups: np.ndarray, n_splits: int,
                 seed: int = 0) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Clip-index (train, validation) splits for choosing C: stratified, grouped.

    No group (recording) is on both sides of a split. Uses at most as many
    splits as there are groups (and at least 2).
    """
    from sklearn.model_selection import StratifiedGroupKFold
    import warnings

    n_groups = len(np.unique(groups))
    k = max(2, min(n_splits, n_groups))
    if n_groups < 2:
        raise ValueError("choosing C by cross-validation needs at least 2 recordings")
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has only n members" on tiny sets
        warnings.simplefilter("ignore", UserWarning)
        return [(tr, va) for tr, va in cv.split(np.zeros(len(labels)), labels, groups)]


def select_c(x: np.ndarray, labels: np.ndarray, groups: np.ndarray, c_grid: Sequence[float], *,
             num_subclips: int, classes: np.ndarray, inner_folds: int = DEFAULT_INNER_FOLDS,
             tol: float = linear_svm.DEFAULT_TOL,
             seed: int = 0) -> Tuple[float, Dict[float, float], dict]:
    """Chooses C by grouped cross-validation on training clips.

    Args:
      x: float32 [n_clips * num_subclips, P], normalised, clip-major.
      labels, groups: [n_clips].
    Returns:
      (best C, {C: mean validation clip accuracy}, stats) where ties go to
      the smaller C and stats = {"fits", "seconds", "hessian_products",
      "model" (the last inner split's fit at the best C; absent without CV)}.
    """
    grid = sorted(float(c) for c in c_grid)
    if len(grid) == 1:
        return grid[0], {}, {"fits": 0, "seconds": 0.0, "hessian_products": 0}
    acc = {c: [] for c in grid}
    stats = {"fits": 0, "seconds": 0.0, "hessian_products": 0}
    rows = np.arange(len(labels) * num_subclips).reshape(len(labels), num_subclips)
    models = {}
    for tr, va in inner_splits(labels, groups, inner_folds, seed):
        xtr = x[rows[tr].reshape(-1)]
        xva = x[rows[va].reshape(-1)]
        ytr = np.repeat(labels[tr], num_subclips)
        basis = linear_svm.subspace_for(xtr)  # one preconditioner basis for the whole C path
        model = None
        for c in grid:  # increasing C, each fit warm-started from the previous
            model = linear_svm.fit_ova_svm(xtr, ytr, c, tol=tol, classes=classes, warm_start=model,
                                           basis=basis)
            models[c] = model
            pred = classes[np.argmax(clip_scores(model, xva, num_subclips), axis=1)]
            acc[c].append(float(np.mean(pred == labels[va])))
            stats["fits"] += 1
            stats["seconds"] += model.info["seconds"]
            stats["hessian_products"] += model.info["hessian_products"]
        del xtr, xva
    mean_acc = {c: float(np.mean(v)) for c, v in acc.items()}
    best = max(grid, key=lambda c: (mean_acc[c], -c))
    if best == grid[-1] and mean_acc[grid[-1]] > mean_acc[grid[-2]]:
        logging.warning("C-selection chose the largest C of the grid (%g): consider extending it",
                        best)
    stats["model"] = models[best]  # a warm start for the final fit
    return best, mean_acc, stats


def train_and_test(train_features: np.ndarray, train_labels: np.ndarray,
                   test_features: np.ndarray, test_labels: np.ndarray, *,
                   train_groups: Optional[np.ndarray] = None,
                   c_grid: Sequence[float] = DEFAULT_C_GRID,
                   inner_folds: int = DEFAULT_INNER_FOLDS, tol: float = linear_svm.DEFAULT_TOL,
                   classes: Optional[np.ndarray] = None, seed: int = 0) -> dict:
    """The protocol on one split.

    Args:
      train_features, test_features: float [n, num_subclips, P] raw features.
      train_labels, test_labels: [n] labels.
      train_groups: [n_train] recording ids for the C-selection CV (default:
        each clip its own recording).
    Returns:
      {"accuracy", "C", "cv_accuracy" {str(C): acc}, "predictions" [n_test],
      "scores" float32 [n_test, K], "classes", "fit_seconds", "select_seconds",
      "hessian_products", "converged", "zscore" (the fitted ZScore)}.
    """
    start = time.perf_counter()
    num_subclips = train_features.shape[1]
    if test_features.shape[1] != num_subclips:
        raise ValueError("train and test need the same number of subclips")
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    classes = np.unique(train_labels) if classes is None else np.asarray(classes)
    groups = np.arange(len(train_labels)) if train_groups is None else np.asarray(train_groups)
    zscore = fit_zscore(train_features)  # training clips only
    xtr = zscore.apply(train_features)
    best_c, cv_acc, stats = select_c(xtr, train_labels, groups, c_grid, num_subclips=num_subclips,
                                     classes=classes, inner_folds=inner_folds, tol=tol, seed=seed)
    model = linear_svm.fit_ova_svm(xtr, np.repeat(train_labels, num_subclips), best_c, tol=tol,
                                   classes=classes, warm_start=stats.get("model"))
    del xtr
    scores = clip_scores(model, zscore.apply(test_features), num_subclips)
    pred = classes[np.argmax(scores, axis=1)]
    return {
        "accuracy": float(np.mean(pred == test_labels)) if len(test_labels) else float("nan"),
        "C": best_c,
        "cv_accuracy": {repr(c): a for c, a in cv_acc.items()},
        "predictions": pred,
        "scores": scores.astype(np.float32),
        "classes": classes,
        "fit_seconds": time.perf_counter() - start,
        "select_seconds": stats["seconds"],
        "select_fits": stats["fits"],
        "hessian_products": stats["hessian_products"] + model.info["hessian_products"],
        "converged": model.info["converged"],
        "zscore": zscore,
    }


# ----------------------------------------------------------------------------
# Folds and results.


def run_folds(features: np.ndarray, labels: np.ndarray, folds: np.ndarray, *,
              groups: Optional[np.ndarray] = None, c_grid: Sequence[float] = DEFAULT_C_GRID,
              inner_folds: int = DEFAULT_INNER_FOLDS, tol: float = linear_svm.DEFAULT_TOL,
              seed: int = 0, log: Optional[Callable[[str], None]] = None) -> List[dict]:
    """Leave-one-fold-out: for each fold value f (sorted), train on the others, test on f.

    features float [n, num_subclips, P]; labels, folds, groups [n]. Returns one
    `train_and_test` dict per fold, plus "fold" and "test_index".
    """
    labels, folds = np.asarray(labels), np.asarray(folds)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    _check_groups_within_folds(groups, folds)
    classes = np.unique(labels)
    results = []
    for fold in np.unique(folds):
        test = np.flatnonzero(folds == fold)
        train = np.flatnonzero(folds != fold)
        r = train_and_test(features[train], labels[train], features[test], labels[test],
                           train_groups=groups[train], c_grid=c_grid, inner_folds=inner_folds,
                           tol=tol, classes=classes, seed=seed)
        r["fold"] = fold.item() if hasattr(fold, "item") else fold
        r["test_index"] = test
        results.append(r)
        if log:
            log(f"fold {r['fold']}: accuracy {r['accuracy']:.4f} (C={r['C']:g}, "
                f"{r['fit_seconds']:.1f} s)")
    return results


def _check_groups_within_folds(groups: np.ndarray, folds: np.ndarray) -> None:
    """Raises ValueError when a recording has clips in two folds (a leak)."""
    seen: Dict = {}
    for g, f in zip(groups.tolist(), folds.tolist()):
        if seen.setdefault(g, f) != f:
            raise ValueError(f"recording {g!r} has clips in folds {seen[g]!r} and {f!r}: "
                             "its clips would be on both sides of a split")


def per_class_accuracy(labels: np.ndarray, predictions: np.ndarray,
                       names: Optional[Dict] = None) -> Dict[str, float]:
    """{class name: accuracy over its clips}."""
    out = {}
    for c in np.unique(labels):
        mask = labels == c
        key = str(names.get(c.item() if hasattr(c, "item") else c, c)) if names else str(c)
        out[key] = float(np.mean(predictions[mask] == c))
    return out


def protocol_description(*, num_subclips: int, feature_dim: int, c_grid: Sequence[float],
                         inner_folds: int, tol: float, encoder: Encoder, evaluation: str) -> dict:
    """The `protocol` block of a result JSON (what was done, so a number can be judged)."""
    return {
        "subclips_per_clip": int(num_subclips),
        "subclip_seconds": encoder.clip_samples / encoder.sample_rate,
        "subclip_placement": "equally spaced: starts round(linspace(0, len - window, N)); "
                             "clips shorter than a window zero padded",
        "sample_rate": encoder.sample_rate,
        "feature": encoder.description.get("feature", FEATURE),
        "feature_note": "conv4_2 before ReLU, max-pooled with kernel = stride "
                        "(4x3x512 for the paper preset)",
        "feature_dim": int(feature_dim),
        "normalization": "z-score; mean and std fitted on the training clips' subclips only",
        "classifier": "one-vs-all linear SVM, L2-regularised squared hinge, unregularised bias",
        "solver": "batched primal truncated Newton (Newton-CG, exact line search), float32 BLAS, "
                  f"CG preconditioned on the top-{linear_svm.DEFAULT_PRECONDITION_RANK} singular "
                  "subspace (l3.transfer.linear_svm; liblinear's L2-loss primal method, all "
                  "classes at once)",
        "tol": tol,
        "stopping": "per class: a Newton step lowers the objective by less than tol (relative)",
        "c_selection": {
            "method": f"stratified group {inner_folds}-fold CV inside the training clips "
                      "(a group is a "
                      "recording), clip accuracy, ties to the smaller C, C path warm-started; "
                      "z-score of the outer training clips reused; final fit on all training "
                      "clips warm-started from the CV fit at the chosen C",
            "grid": [float(c) for c in sorted(c_grid)],
            "inner_folds": int(inner_folds),
        },
        "clip_score": "mean of the subclip decision scores; prediction = argmax",
        "evaluation": evaluation,
        "encoder": encoder.description,
    }


def summarize(fold_results: List[dict], labels: np.ndarray, *,
              names: Optional[Dict] = None) -> dict:
    """mean/std accuracy, per-fold lists, chosen Cs, timings, per-class accuracy (pooled)."""
    accs = [r["accuracy"] for r in fold_results]
    predictions = np.empty(len(labels), dtype=np.asarray(labels).dtype)
    covered = np.zeros(len(labels), bool)
    for r in fold_results:
        if "test_index" in r:
            predictions[r["test_index"]] = r["predictions"]
            covered[r["test_index"]] = True
    out = {
        "mean_accuracy": float(np.mean(accs)),
        "std_accuracy": float(np.std(accs)),
        "fold_accuracies": accs,
        "folds": [r.get("fold") for r in fold_results],
        "chosen_C": [r["C"] for r in fold_results],
        "cv_accuracy": [r["cv_accuracy"] for r in fold_results],
        "fit_seconds": [round(r["fit_seconds"], 3) for r in fold_results],
        "select_fits": [r["select_fits"] for r in fold_results],
        "hessian_products": [r["hessian_products"] for r in fold_results],
        "all_converged": all(r["converged"] for r in fold_results),
    }
    if covered.all():
        out["per_class_accuracy"] = per_class_accuracy(np.asarray(labels), predictions, names)
    return out


def evaluate_clips(encoder, clips: Sequence[np.ndarray], labels: Sequence, folds: Sequence, *,
                   sample_rate: int, num_subclips: int, groups: Optional[Sequence] = None,
                   c_grid: Sequence[float] = DEFAULT_C_GRID, inner_folds: int = DEFAULT_INNER_FOLDS,
                   tol: float = linear_svm.DEFAULT_TOL, clip_samples: Optional[int] = None,
                   feature: str = FEATURE, batch_size: int = 64, seed: int = 0,
                   encoder_sample_rate: Optional[int] = None, progress: bool = False) -> dict:
    """The ESC-style linear-SVM protocol on clips held in memory.

    Args:
      encoder: an `ExportedModel`, an export directory, an `Encoder`, or a
        callable float32 [m, clip_samples] -> [m, P] (or a dict with `feature`,
        as a Keras encoder from `l3.model.build_encoder` returns).
      clips: mono float waveforms at `sample_rate`, any lengths (resampled to
        the encoder's rate when it differs).
      labels, folds: [n_clips]; leave-one-fold-out over the distinct folds.
      groups: [n_clips] recording ids (clips of one recording must share a
        fold; the C-selection CV keeps them together). Default: one per clip.
      num_subclips: equally spaced 1 s windows per clip (10 for ESC-50).
      c_grid: a single value skips the C-selection CV.
      clip_samples, encoder_sample_rate: window length and input rate of a
        callable encoder (default: one second at `sample_rate`); an export
        knows its own.
    Returns:
      the result dict of `summarize` plus "protocol", "num_clips", "num_classes".
    """
    enc = as_encoder(encoder, sample_rate=encoder_sample_rate or sample_rate,
                     clip_samples=clip_samples, feature=feature, batch_size=batch_size)
    t0 = time.perf_counter()
    features = clip_features(enc, clips, num_subclips, sample_rate=sample_rate, progress=progress)
    feature_seconds = time.perf_counter() - t0
    labels = np.asarray(labels)
    results = run_folds(features, labels, np.asarray(folds), groups=groups, c_grid=c_grid,
                        inner_folds=inner_folds, tol=tol, seed=seed)
    out = summarize(results, labels)
    out.update(num_clips=len(labels), num_classes=len(np.unique(labels)))
    out["protocol"] = protocol_description(
        num_subclips=num_subclips, feature_dim=features.shape[-1], c_grid=c_grid,
        inner_folds=inner_folds, tol=tol, encoder=enc,
        evaluation=f"leave-one-fold-out over {len(np.unique(folds))} folds")
    out["protocol"]["feature_seconds"] = round(feature_seconds, 3)
    out["protocol"]["fit_seconds"] = out["fit_seconds"]
    return out


def write_json(result: dict, path: str) -> None:
    """Writes `result` as indented JSON, atomically (numpy scalars converted)."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".result-", suffix=".json.tmp", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=2, default=_json_default)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def random_encoder(preset_name: str, *, seed: int = 0, feature: str = FEATURE,
                   batch_size: int = 64) -> Encoder:
    """The paper's "Ours random": the audio network of `preset_name` with random weights.

    In memory, no export; Keras initialisers seeded with `seed`.
    """
    import keras
    from l3 import model as model_lib
    from l3 import presets

    preset = presets.get_preset(preset_name)
    keras.utils.set_random_seed(seed)
    avc = model_lib.build_avc_model(preset)
    net = model_lib.build_encoder(model_lib.subnetworks(avc)[model_lib.AUDIO], preset,
                                  model_lib.AUDIO)

    def fn(waveforms: np.ndarray) -> np.ndarray:
        out = [np.asarray(net.predict_on_batch(waveforms[i:i + batch_size])[feature], np.float32)
               for i in range(0, len(waveforms), batch_size)]
        return np.concatenate(out)

    h = hashlib.sha1()
    for w in net.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return Encoder(fn, preset.sample_rate, preset.clip_samples,
                   {"random_weights": True, "preset": preset.name, "seed": seed, "feature": feature,
                    "weights_sha1": h.hexdigest()},
                   f"{h.hexdigest()}-{feature}")
