"""DCASE 2013 acoustic scene classification, section 3.3, Table 2b.

Layout (the released development set; the test set, released after the
challenge, is named the same way):

  <data_dir>/scenes_stereo/<class><NN>.wav     e.g. bus01.wav ... tubestation10.wav

30 s, 44.1 kHz, 16-bit binaural clips; 10 classes (bus, busystreet, office,
openairmarket, park, quietstreet, restaurant, supermarket, tube,
tubestation) x 10 clips. Decoding mixes the two channels to mono
(`l3.media.decode_audio`) and resamples to the encoder's rate.

Protocols:

* development set, the challenge's 5-fold cross-validation: folds stratified
  by class, 2 clips of each class per fold. Which clips share a fold is not
  in the released files; here clip numbers are split in contiguous blocks
  (01-02 fold 1, 03-04 fold 2, ...), so neighbouring recordings, which may
  come from the same session, stay together (`dev_folds`).
* with a test folder: train on the whole development set, test on the test
  set. The challenge ranked its entries (RG, LTT, RNH, Ensemble in the
  paper's Table 2b) on the test set, so this is the number to set beside
  the paper's 93 %; the paper does not say more about its DCASE split.

60 equally spaced 1 s subclips per clip; see `audio_protocol` for the rest.
"""

import collections
import logging
import os
import re
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from l3 import constants as C
from l3.transfer import audio_protocol as ap
from l3.transfer import linear_svm

CLASSES = ("bus", "busystreet", "office", "openairmarket", "park", "quietstreet", "restaurant",
           "supermarket", "tube", "tubestation")
SCENES_DIR = "scenes_stereo"
NUM_FOLDS = 5
_NAME = re.compile(r"^([a-z]+?)(\d+)\.wav$", re.IGNORECASE)


def _audio_dir(root: str) -> str:
    """`root/scenes_stereo*` if present (the release layout), else `root` itself."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root} is not a directory")
    for name in sorted(os.listdir(root)):
        sub = os.path.join(root, name)
        if name.lower().startswith(SCENES_DIR) and os.path.isdir(sub):
            return sub
    return root


def list_scenes(root: str) -> List[Tuple[str, str, int]]:
    """(path, class, clip number) of every `<class><NN>.wav`, sorted by class then number."""
    folder = _audio_dir(root)
    items = []
    for name in os.listdir(folder):
        m = _NAME.match(name)
        if m:
            items.append((os.path.join(folder, name), m.group(1).lower(), int(m.group(2))))
    if not items:
        raise FileNotFoundError(f"no <class><NN>.wav files in {folder}: expected the DCASE 2013 "
                                f"scene layout ({SCENES_DIR}/bus01.wav, ...)")
    unknown = sorted({c for _, c, _ in items} - set(CLASSES))
    if unknown:
        logging.warning("classes outside DCASE 2013's ten: %s", unknown)
    return sorted(items, key=lambda t: (t[1], t[2]))


def dev_folds(items: Sequence[Tuple[str, str, int]], num_folds: int = NUM_FOLDS) -> np.ndarray:
    """Fold (1..num_folds) per item: per class, clips in number order cut into contiguous blocks."""
    by_class = collections.defaultdict(list)
    for i, (_, c, n) in enumerate(items):
        by_class[c].append((n, i))
    folds = np.zeros(len(items), np.int64)
    for c, members in by_class.items():
        members.sort()
        if len(members) < num_folds:
            raise ValueError(f"class {c!r} has {len(members)} clips, fewer than {num_folds} folds")
        for rank, (_, i) in enumerate(members):
            folds[i] = 1 + rank * num_folds // len(members)
    return folds


def _features(name, enc, items, num_subclips, cache_dir, workers, progress):
    paths = [p for p, _, _ in items]
    return ap.cached_features(
        cache_dir, name, enc, {"files": [os.path.basename(p) for p in paths],
                               "num_subclips": num_subclips},
        lambda: ap.file_features(enc, paths, num_subclips, workers=workers, progress=progress))


def run(data_dir: str, encoder, *, test_dir: Optional[str] = None,
        c_grid: Sequence[float] = ap.DEFAULT_C_GRID, inner_folds: int = ap.DEFAULT_INNER_FOLDS,
        tol: float = linear_svm.DEFAULT_TOL, num_subclips: int = C.DCASE_SUBCLIPS,
        num_folds: int = NUM_FOLDS, cache_dir: Optional[str] = None, workers: int = 2,
        batch_size: int = 64, seed: int = 0, progress: bool = False) -> Dict:
    """The DCASE benchmark: dev-set CV, and dev -> test when `test_dir` is given.

    Returns the result dict of `audio_protocol.summarize` for the dev CV
    (`mean_accuracy`, `fold_accuracies`, ...), plus `test_accuracy` and
    `test_per_class_accuracy` when a test set was given.
    """
    enc = ap.as_encoder(encoder, batch_size=batch_size)
    dev = list_scenes(data_dir)
    t0 = time.perf_counter()
    dev_x, dev_cached = _features("dcase-dev", enc, dev, num_subclips, cache_dir, workers, progress)
    dev_y = np.array([c for _, c, _ in dev])
    folds = dev_folds(dev, num_folds)
    feature_seconds = time.perf_counter() - t0
    results = ap.run_folds(dev_x, dev_y, folds, c_grid=c_grid, inner_folds=inner_folds, tol=tol,
                           seed=seed, log=logging.info)
    out = {"benchmark": "dcase2013_scenes", "data_dir": os.path.abspath(data_dir)}
    out.update(ap.summarize(results, dev_y))
    out.update(num_clips=len(dev), num_classes=len(np.unique(dev_y)),
               paper_accuracy=C.PAPER_RESULTS["dcase_accuracy"])
    evaluation = (f"development set: {num_folds}-fold CV, folds stratified by class (contiguous "
                  "clip-number blocks per class)")
    test_cached = None
    if test_dir:
        test = list_scenes(test_dir)
        t1 = time.perf_counter()
        test_x, test_cached = _features("dcase-test", enc, test, num_subclips, cache_dir, workers,
                                        progress)
        feature_seconds += time.perf_counter() - t1
        test_y = np.array([c for _, c, _ in test])
        r = ap.train_and_test(dev_x, dev_y, test_x, test_y, c_grid=c_grid, inner_folds=inner_folds,
                              tol=tol, seed=seed,
                              classes=np.unique(np.concatenate([dev_y, test_y])))
        out.update(test_dir=os.path.abspath(test_dir), test_accuracy=r["accuracy"],
                   test_num_clips=len(test), test_C=r["C"], test_cv_accuracy=r["cv_accuracy"],
                   test_fit_seconds=round(r["fit_seconds"], 3),
                   test_per_class_accuracy=ap.per_class_accuracy(test_y, r["predictions"]))
        evaluation += "; then trained on the whole development set and tested on the test set"
        logging.info("test set: accuracy %.4f (C=%g)", r["accuracy"], r["C"])
    protocol = ap.protocol_description(
        num_subclips=num_subclips, feature_dim=dev_x.shape[-1], c_grid=c_grid,
        inner_folds=inner_folds, tol=tol, encoder=enc, evaluation=evaluation)
    protocol.update(mixdown="binaural channels averaged to mono", folds=folds.tolist(),
                    feature_seconds=round(feature_seconds, 3),
                    features_from_cache=dev_cached and test_cached is not False,
                    fit_seconds=out["fit_seconds"],
                    fit_seconds_total=round(sum(out["fit_seconds"]), 3))
    out["protocol"] = protocol
    return out


def format_table(result: Dict) -> str:
    """A table beside the paper's Table 2b."""
    p = result["protocol"]
    lines = [f"DCASE 2013 scenes: {result['num_clips']} development clips, {result['num_classes']} "
             f"classes, {p['subclips_per_clip']} subclips/clip, "
             f"{p['feature']} {p['feature_dim']}-D, "
             "linear SVM",
             f"{'fold':>6}  {'accuracy':>8}  {'C':>8}  {'fit s':>7}"]
    for fold, acc, c, s in zip(result["folds"], result["fold_accuracies"], result["chosen_C"],
                               result["fit_seconds"]):
        lines.append(f"{fold!s:>6}  {acc:8.1%}  {c:8.0e}  {s:7.1f}")
    lines.append(f"{'CV':>6}  {result['mean_accuracy']:8.1%}  (development set, "
                 f"std {result['std_accuracy']:.1%})")
    if "test_accuracy" in result:
        lines.append(f"{'test':>6}  {result['test_accuracy']:8.1%}  (trained on development, "
                     f"{result['test_num_clips']} test clips, C={result['test_C']:g})")
    lines.append(f"{'paper':>6}  {result['paper_accuracy']:8.1%}  (L3-Net, Table 2b)")
    random = C.PAPER_RESULTS.get("dcase_accuracy_random")
    if random:
        lines.append(f"{'':>6}  {random:8.1%}  (paper, same network with random weights)")
    return "\n".join(lines)
