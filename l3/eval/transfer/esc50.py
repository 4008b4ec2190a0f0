"""ESC-50 (and ESC-10) environmental sound classification, section 3.3, Table 2a.

Layout (the released dataset, github.com/karolpiczak/ESC-50):

  <data_dir>/audio/<filename>.wav       2000 clips, 5 s, 44.1 kHz mono
  <data_dir>/meta/esc50.csv             filename,fold,target,category,esc10,src_file,take

Protocol: the 5 predefined folds, leave-one-fold-out, mean accuracy
(the paper: 79.3 %); 10 equally spaced 1 s subclips per clip; see
`l3.eval.transfer.protocol` for the rest. `esc10=True` keeps the 40 x 10 clips flagged
`esc10` (targets renumbered only in reports; labels stay ESC-50 targets).

Folds never leak: the dataset puts every clip cut from one Freesound
recording (`src_file`) in one fold; `read_meta` checks it, and the C-selection
CV groups clips by `src_file`.
"""

import csv
import logging
import os
import time
from typing import Dict, List

import numpy as np

from l3.core import constants as C
from l3.eval.transfer import encoders, features, protocol
from l3.eval.transfer.protocol_config import SvmProtocolConfig, protocol_description

META = os.path.join("meta", "esc50.csv")
AUDIO = "audio"
COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")


def read_meta(data_dir: str, esc10: bool = False) -> List[Dict]:
    """Rows of meta/esc50.csv as dicts (fold and target int, esc10 bool), in file order.

    Raises FileNotFoundError (with the expected layout) or ValueError (missing
    columns, or a `src_file` in two folds).
    """
    path = os.path.join(data_dir, META)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: --data_dir must be the ESC-50 root "
                                "(holding audio/ and meta/esc50.csv)")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} lacks columns {missing}")
        rows = []
        for r in reader:
            rows.append({"filename": r["filename"], "fold": int(r["fold"]),
                         "target": int(r["target"]),
                         "category": r["category"], "esc10": r["esc10"].strip().lower() == "true",
                         "src_file": r["src_file"], "take": r["take"]})
    protocol.check_groups_within_folds(np.array([r["src_file"] for r in rows]),
                                       np.array([r["fold"] for r in rows]))
    if esc10:
        rows = [r for r in rows if r["esc10"]]
        if not rows:
            raise ValueError(f"{path}: no clip is flagged esc10")
    return rows


def run(data_dir: str, encoder, *, esc10: bool = False,
        config: SvmProtocolConfig = SvmProtocolConfig()) -> Dict:
    """The ESC-50 (or ESC-10) benchmark; returns the result dict (see `protocol.summarize`).

    `encoder`: an export directory, `ExportedModel`, or `encoders.Encoder`.
    `config.num_subclips` defaults to the paper's 10.
    """
    config = config.with_default_subclips(C.ESC50_SUBCLIPS)
    rows = read_meta(data_dir, esc10)
    enc = encoders.as_encoder(encoder, feature=config.feature, batch_size=config.batch_size)
    paths = [os.path.join(data_dir, AUDIO, r["filename"]) for r in rows]
    t0 = time.perf_counter()
    x, cached = features.cached_file_features(enc, "esc10" if esc10 else "esc50", paths, config)
    feature_seconds = time.perf_counter() - t0
    labels = np.array([r["target"] for r in rows])
    folds = np.array([r["fold"] for r in rows])
    groups = np.array([r["src_file"] for r in rows])
    results = protocol.run_folds(x, labels, folds, config=config, groups=groups, log=logging.info)
    names = {r["target"]: r["category"] for r in rows}
    out = {"benchmark": "esc10" if esc10 else "esc50", "data_dir": os.path.abspath(data_dir)}
    out.update(protocol.summarize(results, labels, names=names))
    out.update(num_clips=len(rows), num_classes=len(names),
               paper_accuracy=None if esc10 else C.PAPER_RESULTS["esc50_accuracy"])
    description = protocol_description(
        config, feature_dim=x.shape[-1], encoder=enc,
        evaluation=f"leave-one-fold-out over the {len(np.unique(folds))} predefined folds; "
                   "C-selection CV grouped by src_file")
    description.update(feature_seconds=round(feature_seconds, 3), features_from_cache=cached,
                       fit_seconds=out["fit_seconds"],
                       fit_seconds_total=round(sum(out["fit_seconds"]), 3))
    out["protocol"] = description
    return out


def format_table(result: Dict) -> str:
    """A table beside the paper's Table 2a."""
    name = "ESC-10" if result["benchmark"] == "esc10" else "ESC-50"
    lines = [f"{name}: {result['num_clips']} clips, {result['num_classes']} classes, "
             f"{result['protocol']['subclips_per_clip']} subclips/clip, "
             f"{result['protocol']['feature']} {result['protocol']['feature_dim']}-D, linear SVM",
             f"{'fold':>6}  {'accuracy':>8}  {'C':>8}  {'fit s':>7}"]
    for fold, acc, c, s in zip(result["folds"], result["fold_accuracies"], result["chosen_C"],
                               result["fit_seconds"]):
        lines.append(f"{fold!s:>6}  {acc:8.1%}  {c:8.0e}  {s:7.1f}")
    paper = result.get("paper_accuracy")
    lines.append(f"{'mean':>6}  {result['mean_accuracy']:8.1%}  (std {result['std_accuracy']:.1%})")
    if paper:
        lines.append(f"{'paper':>6}  {paper:8.1%}  (L3-Net, Table 2a)")
        random = C.PAPER_RESULTS.get("esc50_accuracy_random")
        if random:
            lines.append(f"{'':>6}  {random:8.1%}  (paper, same network with random weights)")
    else:
        lines.append(f"{'paper':>6}  {'n/a':>8}  (the paper reports ESC-50 only)")
    return "\n".join(lines)
