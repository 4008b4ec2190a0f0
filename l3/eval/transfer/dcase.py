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

60 equally spaced 1 s subclips per clip; see `l3.eval.transfer.protocol` for the rest.
"""

import collections
import logging
import os
import re
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from l3.core import constants as C
from l3.eval.transfer import encoders, features, protocol
from l3.eval.transfer.protocol_config import SvmProtocolConfig, protocol_description

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


def run(data_dir: str, encoder, *, test_dir: Optional[str] = None, num_folds: int = NUM_FOLDS,
        config: SvmProtocolConfig = SvmProtocolConfig()) -> Dict:
    """The DCASE benchmark: dev-set CV, and dev -> test when `test_dir` is given.

    `config.num_subclips` defaults to the paper's 60. Returns the result dict
    of `protocol.summarize` for the dev CV (`mean_accuracy`,
    `fold_accuracies`, ...), plus `test_accuracy` and
    `test_per_class_accuracy` when a test set was given.
    """
    config = config.with_default_subclips(C.DCASE_SUBCLIPS)
    enc = encoders.as_encoder(encoder, feature=config.feature, batch_size=config.batch_size)
    dev = list_scenes(data_dir)
    t0 = time.perf_counter()
    dev_x, dev_cached = features.cached_file_features(enc, "dcase-dev", [p for p, _, _ in dev],
                                                      config)
    dev_y = np.array([c for _, c, _ in dev])
    folds = dev_folds(dev, num_folds)
    feature_seconds = time.perf_counter() - t0
    results = protocol.run_folds(dev_x, dev_y, folds, config=config, log=logging.info)
    out = {"benchmark": "dcase2013_scenes", "data_dir": os.path.abspath(data_dir)}
    out.update(protocol.summarize(results, dev_y))
    out.update(num_clips=len(dev), num_classes=len(np.unique(dev_y)),
               paper_accuracy=C.PAPER_RESULTS["dcase_accuracy"])
    evaluation = (f"development set: {num_folds}-fold CV, folds stratified by class (contiguous "
                  "clip-number blocks per class)")
    test_cached = None
    if test_dir:
        test = list_scenes(test_dir)
        t1 = time.perf_counter()
        test_x, test_cached = features.cached_file_features(
            enc, "dcase-test", [p for p, _, _ in test], config)
        feature_seconds += time.perf_counter() - t1
        test_y = np.array([c for _, c, _ in test])
        r = protocol.train_and_test(dev_x, dev_y, test_x, test_y, config=config,
                                    classes=np.unique(np.concatenate([dev_y, test_y])))
        out.update(test_dir=os.path.abspath(test_dir), test_accuracy=r["accuracy"],
                   test_num_clips=len(test), test_C=r["C"], test_cv_accuracy=r["cv_accuracy"],
                   test_fit_seconds=round(r["fit_seconds"], 3),
                   test_per_class_accuracy=protocol.per_class_accuracy(test_y, r["predictions"]))
        evaluation += "; then trained on the whole development set and tested on the test set"
        logging.info("test set: accuracy %.4f (C=%g)", r["accuracy"], r["C"])
    description = protocol_description(config, feature_dim=dev_x.shape[-1], encoder=enc,
                                       evaluation=evaluation)
    description.update(mixdown="binaural channels averaged to mono", folds=folds.tolist(),
                       feature_seconds=round(feature_seconds, 3),
                       features_from_cache=dev_cached and test_cached is not False,
                       fit_seconds=out["fit_seconds"],
                       fit_seconds_total=round(sum(out["fit_seconds"]), 3))
    out["protocol"] = description
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
