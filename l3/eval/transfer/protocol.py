"""The audio transfer protocol of section 3.3, shared by ESC-50 and DCASE.

Per clip (the paper, following Aytar et al.'s SoundNet set-up):

1. `num_subclips` equally spaced 1 s subclips (`l3.eval.transfer.subclips`).
2. Each subclip through the audio encoder (`l3.eval.transfer.encoders`); the
   feature is `conv4_2_pooled`, 6144-D (768-D for the small preset: 4x3x64):
   features float32 [n_clips, num_subclips, P] (`l3.eval.transfer.features`).
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
   The C path is solved in increasing C with warm starts. When the best C is
   strictly best at an end of the grid, the search steps beyond that end
   (up to `c_extensions` times) so that the chosen C is interior.
5. Clip score = mean of its subclips' decision scores; prediction = argmax;
   accuracy = fraction of test clips predicted right.

Every knob is a field of one `SvmProtocolConfig`. The demo and other callers
with clips in memory use `evaluate_clips`; the benchmark front ends (`esc50`,
`dcase`) decode files, cache features and call `run_folds` / `train_and_test`.
"""

import dataclasses
import logging
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from l3.eval.transfer import linear_svm
from l3.eval.transfer.encoders import as_encoder
from l3.eval.transfer.features import clip_features
from l3.eval.transfer.protocol_config import SvmProtocolConfig, protocol_description


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
    n_groups = len(np.unique(groups))
    k = max(2, min(n_splits, n_groups))
    if n_groups < 2:
        raise ValueError("choosing C by cross-validation needs at least 2 recordings")
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has only n members" on tiny sets
        warnings.simplefilter("ignore", UserWarning)
        return [(tr, va) for tr, va in cv.split(np.zeros(len(labels)), labels, groups)]


def _best_c(mean_acc: Dict[float, float]) -> float:
    """The C of the highest mean accuracy; ties go to the smaller C."""
    return max(mean_acc, key=lambda c: (mean_acc[c], -c))


def _edge_extension(mean_acc: Dict[float, float], up: float, down: float) -> Optional[float]:
    """The next C to try when the best one is *strictly* best at an end of the searched
    values (a tie with its neighbour is a plateau, and C is not truncated); else None."""
    cs = sorted(mean_acc)
    best = _best_c(mean_acc)
    if best == cs[-1] and mean_acc[cs[-1]] > mean_acc[cs[-2]]:
        return float(f"{cs[-1] * up:.12g}")  # 0.01, not 0.010000000000000002
    if best == cs[0] and mean_acc[cs[0]] > mean_acc[cs[1]]:
        return float(f"{cs[0] / down:.12g}")
    return None


def select_c(x: np.ndarray, labels: np.ndarray, groups: np.ndarray, *, num_subclips: int,
             classes: np.ndarray, config: SvmProtocolConfig = SvmProtocolConfig()
             ) -> Tuple[float, Dict[float, float], dict]:
    """Chooses C by grouped cross-validation on training clips, extending the grid at its edges.

    Every C of `config.c_grid` is fitted on every inner split (increasing C,
    each fit warm-started from the previous one). While the best mean
    validation accuracy sits strictly at an end of the values tried, the
    search goes one grid step further that way (the ratio of the grid's two
    outermost values on that side), warm-started from each split's fit at the
    old end, at most `config.c_extensions` times; only then, with C still at
    an edge, a warning is logged.

    Args:
      x: float32 [n_clips * num_subclips, P], normalised, clip-major.
      labels, groups: [n_clips].
      config: `c_grid`, `c_extensions`, `inner_folds`, `tol` and `seed` are used.
    Returns:
      (best C, {C: mean validation clip accuracy} over every C tried, stats)
      where ties go to the smaller C and stats = {"fits", "seconds",
      "hessian_products", "extensions" (Cs added beyond the grid), "model"
      (the last inner split's fit at the best C; absent without CV)}.
    """
    grid = list(config.c_grid)
    if len(grid) == 1:
        return grid[0], {}, {"fits": 0, "seconds": 0.0, "hessian_products": 0, "extensions": []}
    acc: Dict[float, List[float]] = {}
    stats = {"fits": 0, "seconds": 0.0, "hessian_products": 0, "extensions": []}
    rows = np.arange(len(labels) * num_subclips).reshape(len(labels), num_subclips)
    splits = inner_splits(labels, groups, config.inner_folds, config.seed)
    fits: List[Dict[float, linear_svm.OvaSVM]] = [{} for _ in splits]  # per split, per C
    bases: List = [None] * len(splits)

    def evaluate(cs: List[float]) -> None:
        """Fits each C of `cs` (in order) on every split, each warm-started from the
        split's fit at the nearest C tried before."""
        for i, (tr, va) in enumerate(splits):
            xtr = x[rows[tr].reshape(-1)]
            xva = x[rows[va].reshape(-1)]
            ytr = np.repeat(labels[tr], num_subclips)
            if bases[i] is None:  # one preconditioner basis per split for the whole C path
                bases[i] = linear_svm.subspace_for(xtr)
            for c in cs:
                near = min(fits[i], key=lambda f: abs(np.log(f / c)), default=None)
                model = linear_svm.fit_ova_svm(
                    xtr, ytr, c, tol=config.tol, classes=classes, basis=bases[i],
                    warm_start=None if near is None else fits[i][near])
                fits[i][c] = model
                pred = classes[np.argmax(clip_scores(model, xva, num_subclips), axis=1)]
                acc.setdefault(c, []).append(float(np.mean(pred == labels[va])))
                stats["fits"] += 1
                stats["seconds"] += model.info["seconds"]
                stats["hessian_products"] += model.info["hessian_products"]
            del xtr, xva

    evaluate(grid)
    up, down = grid[-1] / grid[-2], grid[1] / grid[0]
    while True:
        mean_acc = {c: float(np.mean(v)) for c, v in acc.items()}
        nxt = _edge_extension(mean_acc, up, down)
        if nxt is None:
            break
        if len(stats["extensions"]) >= config.c_extensions:
            logging.warning("C-selection chose C = %g at the edge of the %d values tried "
                            "(%d grid extensions): raise c_extensions or widen c_grid",
                            _best_c(mean_acc), len(mean_acc), config.c_extensions)
            break
        logging.info("C-selection: best C %g at the edge; trying C = %g", _best_c(mean_acc), nxt)
        stats["extensions"].append(nxt)
        evaluate([nxt])
    best = _best_c(mean_acc)
    stats["model"] = fits[-1][best]  # a warm start for the final fit
    return best, dict(sorted(mean_acc.items())), stats


def train_and_test(train_features: np.ndarray, train_labels: np.ndarray,
                   test_features: np.ndarray, test_labels: np.ndarray, *,
                   config: SvmProtocolConfig = SvmProtocolConfig(),
                   train_groups: Optional[np.ndarray] = None,
                   classes: Optional[np.ndarray] = None) -> dict:
    """The protocol on one split.

    Args:
      train_features, test_features: float [n, num_subclips, P] raw features.
      train_labels, test_labels: [n] labels.
      config: the SVM knobs (`c_grid`, `inner_folds`, `tol`, `seed`).
      train_groups: [n_train] recording ids for the C-selection CV (default:
        each clip its own recording).
      classes: [K] class order of the scores (default: the training labels').
    Returns:
      {"accuracy", "C", "cv_accuracy" {str(C): acc} (every C tried),
      "predictions" [n_test], "scores" float32 [n_test, K], "classes",
      "fit_seconds", "select_seconds", "select_fits", "c_extensions" (Cs
      tried beyond the grid), "hessian_products", "converged", "zscore"
      (the fitted ZScore)}.
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
    best_c, cv_acc, stats = select_c(xtr, train_labels, groups, num_subclips=num_subclips,
                                     classes=classes, config=config)
    model = linear_svm.fit_ova_svm(xtr, np.repeat(train_labels, num_subclips), best_c,
                                   tol=config.tol, classes=classes, warm_start=stats.get("model"))
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
        "c_extensions": stats["extensions"],
        "hessian_products": stats["hessian_products"] + model.info["hessian_products"],
        "converged": model.info["converged"],
        "zscore": zscore,
    }


def run_folds(features: np.ndarray, labels: np.ndarray, folds: np.ndarray, *,
              config: SvmProtocolConfig = SvmProtocolConfig(),
              groups: Optional[np.ndarray] = None,
              log: Optional[Callable[[str], None]] = None) -> List[dict]:
    """Leave-one-fold-out: for each fold value f (sorted), train on the others, test on f.

    features float [n, num_subclips, P]; labels, folds, groups [n]. Returns one
    `train_and_test` dict per fold, plus "fold" and "test_index".
    """
    labels, folds = np.asarray(labels), np.asarray(folds)
    groups = np.arange(len(labels)) if groups is None else np.asarray(groups)
    check_groups_within_folds(groups, folds)
    classes = np.unique(labels)
    results = []
    for fold in np.unique(folds):
        test = np.flatnonzero(folds == fold)
        train = np.flatnonzero(folds != fold)
        r = train_and_test(features[train], labels[train], features[test], labels[test],
                           config=config, train_groups=groups[train], classes=classes)
        r["fold"] = fold.item() if hasattr(fold, "item") else fold
        r["test_index"] = test
        results.append(r)
        if log:
            log(f"fold {r['fold']}: accuracy {r['accuracy']:.4f} (C={r['C']:g}, "
                f"{r['fit_seconds']:.1f} s)")
    return results


def check_groups_within_folds(groups: np.ndarray, folds: np.ndarray) -> None:
    """ValueError when a recording (groups [n]) has clips in two folds (folds [n]): a leak."""
    seen: Dict = {}
    for g, f in zip(groups.tolist(), folds.tolist()):
        if seen.setdefault(g, f) != f:
            raise ValueError(f"recording {g!r} has clips in folds {seen[g]!r} and {f!r}: "
                             "its clips would be on both sides of a split")


def per_class_accuracy(labels: np.ndarray, predictions: np.ndarray,
                       names: Optional[Dict] = None) -> Dict[str, float]:
    """{class name: accuracy over its clips}; labels, predictions [n]."""
    out = {}
    for c in np.unique(labels):
        mask = labels == c
        key = str(names.get(c.item() if hasattr(c, "item") else c, c)) if names else str(c)
        out[key] = float(np.mean(predictions[mask] == c))
    return out


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
        "c_extensions": [r.get("c_extensions", []) for r in fold_results],
        "hessian_products": [r["hessian_products"] for r in fold_results],
        "all_converged": all(r["converged"] for r in fold_results),
    }
    if covered.all():
        out["per_class_accuracy"] = per_class_accuracy(np.asarray(labels), predictions, names)
    return out


def evaluate_clips(encoder, clips: Sequence[np.ndarray], labels: Sequence, folds: Sequence, *,
                   sample_rate: int, config: SvmProtocolConfig,
                   groups: Optional[Sequence] = None, clip_samples: Optional[int] = None,
                   encoder_sample_rate: Optional[int] = None) -> dict:
    """The ESC-style linear-SVM protocol on clips held in memory.

    Args:
      encoder: an `ExportedModel`, an export directory, an `Encoder`, or a
        callable float32 [m, clip_samples] -> [m, P] (or a dict with `feature`,
        as a Keras encoder from `l3.model.build_encoder` returns).
      clips: mono float waveforms at `sample_rate`, any lengths (resampled to
        the encoder's rate when it differs).
      labels, folds: [n_clips]; leave-one-fold-out over the distinct folds.
      config: the protocol; `num_subclips` (equally spaced 1 s windows per
        clip, 10 for ESC-50) must be set; a single-value `c_grid` skips the
        C-selection CV.
      groups: [n_clips] recording ids (clips of one recording must share a
        fold; the C-selection CV keeps them together). Default: one per clip.
      clip_samples, encoder_sample_rate: window length and input rate of a
        callable encoder (default: one second at `sample_rate`); an export
        knows its own.
    Returns:
      the result dict of `summarize` plus "protocol", "num_clips", "num_classes".
    """
    num_subclips = config.subclips()
    enc = as_encoder(encoder, sample_rate=encoder_sample_rate or sample_rate,
                     clip_samples=clip_samples, feature=config.feature,
                     batch_size=config.batch_size)
    t0 = time.perf_counter()
    features = clip_features(enc, clips, num_subclips, sample_rate=sample_rate,
                             progress=config.progress)
    feature_seconds = time.perf_counter() - t0
    labels = np.asarray(labels)
    results = run_folds(features, labels, np.asarray(folds), config=config, groups=groups)
    out = summarize(results, labels)
    out.update(num_clips=len(labels), num_classes=len(np.unique(labels)))
    out["protocol"] = protocol_description(
        config, feature_dim=features.shape[-1], encoder=enc,
        evaluation=f"leave-one-fold-out over {len(np.unique(folds))} folds")
    out["protocol"]["feature_seconds"] = round(feature_seconds, 3)
    out["protocol"]["fit_seconds"] = out["fit_seconds"]
    return out
