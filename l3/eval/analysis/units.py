"""Unit preference (section 3.5.3): do single pool4 units prefer one class?

For each of the D pool4 units ("a component of the 512 dimensional pool4
vector", 3.5.1) the held-out items are ranked by the unit's activation and the
top 5 kept; "if 4 out of these 5 images correspond to one class, then that
class is deemed to have a high-preference for the unit". The paper counts the
classes that have at least one such unit (10 vision / 11 audio of 34 trained,
1 / 1 untrained), and again with 3 of 5 (23 / 20 vs 4 / 3).

Details the paper leaves open:
* "4 out of 5" is read as *at least* 4 (a 5-of-5 unit counts too);
* ties in activation are broken in a seeded random order, not by item order
  (items often come grouped by class; breaking ties by index would make a
  constant unit look class-selective);
* units whose activation is the same for every item ("dead": a ReLU that never
  fires) prefer nothing and are excluded, and counted in the report;
* a "chance" row gives the expected counts for the trained activations with the
  labels shuffled: with few classes or few items, chance coverage is high.

Activations are pool4 outputs: float [n_items, D]; labels int [n_items].
"""

import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np

from l3.core import constants as C


@dataclasses.dataclass
class UnitPreference:
    """Per-unit ranking: arrays over units u = 0..D-1.

    top_items: int [D, k], item indices, highest activation first.
    majority_class: int [D], the most frequent class among the top k.
    majority_count: int [D], how many of the top k are of that class.
    dead: bool [D], the unit is constant over items (excluded from counts).
    """

    top_items: np.ndarray
    majority_class: np.ndarray
    majority_count: np.ndarray
    dead: np.ndarray

    @property
    def top_k(self) -> int:
        return self.top_items.shape[1]


def top_items(activations: np.ndarray, top_k: int = C.UNIT_TOP_K, seed: int = 0,
              groups: Optional[Sequence] = None) -> np.ndarray:
    """Indices of each unit's `top_k` items, highest first: [n, D] -> int [D, top_k].

    Ties are broken in a seeded random order of the items. With `groups`
    ([n], e.g. video ids), a unit's top items come from distinct groups (its
    best item of each), so several frames of one video cannot make a unit
    look class-selective.
    """
    acts = np.asarray(activations, np.float64)
    n = acts.shape[0]
    perm = np.random.default_rng(seed).permutation(n)
    order = perm[np.argsort(-acts[perm], axis=0, kind="stable")]  # [n, D] item indices
    if groups is None:
        return order[:min(top_k, n)].T
    _, group_ids = np.unique(np.asarray(groups), return_inverse=True)
    k = min(top_k, int(group_ids.max()) + 1)
    rows = []
    for unit in range(acts.shape[1]):
        _, first = np.unique(group_ids[order[:, unit]], return_index=True)
        rows.append(order[np.sort(first)[:k], unit])
    return np.stack(rows)


def unit_preferences(activations: np.ndarray, labels: np.ndarray, top_k: int = C.UNIT_TOP_K,
                     seed: int = 0, groups: Optional[Sequence] = None) -> UnitPreference:
    """Ranks items per unit and finds each unit's majority class among its top k
    (from distinct `groups`, e.g. videos, when given; see `top_items`)."""
    acts = np.asarray(activations)
    labels = np.asarray(labels, np.int64)
    if acts.ndim != 2 or len(acts) != len(labels):
        raise ValueError(f"activations must be [n, D] with n = {len(labels)}, got {acts.shape}")
    top = top_items(acts, top_k, seed, groups)
    top_labels = labels[top]  # [D, k]
    num_classes = int(labels.max()) + 1
    counts = np.stack([np.bincount(row, minlength=num_classes) for row in top_labels])
    dead = np.ptp(acts, axis=0) == 0
    return UnitPreference(top_items=top, majority_class=counts.argmax(axis=1),
                          majority_count=counts.max(axis=1), dead=dead)


def preferred_classes(pref: UnitPreference, threshold: int) -> np.ndarray:
    """Sorted class indices that have a live unit with >= `threshold` of its top k in the class."""
    hit = (pref.majority_count >= threshold) & ~pref.dead
    return np.unique(pref.majority_class[hit])


def preference_report(pref: UnitPreference, class_names: Sequence[str],
                      thresholds: Sequence[int] = C.UNIT_PREFERENCE_THRESHOLDS) -> Dict:
    """Counts for one network. For each threshold t, with k = top_k:

      "top{k}_{t}": number of classes with a high-preference unit (the paper's number),
      "top{k}_{t}_classes": their names, "top{k}_{t}_units": how many units qualify;
    plus "num_units", "dead_units", "num_classes".
    """
    k = pref.top_k
    out: Dict[str, object] = {}
    for t in thresholds:
        classes = preferred_classes(pref, t)
        out[f"top{k}_{t}"] = int(len(classes))
        out[f"top{k}_{t}_classes"] = [class_names[c] for c in classes]
        out[f"top{k}_{t}_units"] = int(((pref.majority_count >= t) & ~pref.dead).sum())
    out["num_units"] = int(len(pref.dead))
    out["dead_units"] = int(pref.dead.sum())
    out["num_classes"] = int(len(class_names))
    return out


def chance_report(activations: np.ndarray, labels: np.ndarray, top_k: int = C.UNIT_TOP_K,
                  thresholds: Sequence[int] = C.UNIT_PREFERENCE_THRESHOLDS, seed: int = 0,
                  repeats: int = 10, groups: Optional[Sequence] = None) -> Dict[str, float]:
    """Expected "top{k}_{t}" class counts when the labels are shuffled (mean over `repeats`).

    The same ranking rule as `unit_preferences`: with `groups` ([n], e.g.
    video ids) a unit's top k come from k distinct groups, and the shuffle
    permutes whole groups' labels (every item of a video keeps sharing one
    label, as in the real data), so the chance row differs from the trained
    row only in the label-to-activation link.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    # Rankings do not depend on the labels: rank once, relabel many times.
    top = top_items(activations, top_k, seed, groups)
    dead = np.ptp(np.asarray(activations), axis=0) == 0
    num_classes = int(labels.max()) + 1
    if groups is not None:
        _, first, group_ids = np.unique(np.asarray(groups), return_index=True,
                                        return_inverse=True)
        group_labels = labels[first]
        if np.any(group_labels[group_ids] != labels):
            raise ValueError("chance_report: items of one group have different labels")
    totals = {t: [] for t in thresholds}
    for _ in range(repeats):
        if groups is None:
            shuffled = rng.permutation(labels)[top]
        else:
            shuffled = rng.permutation(group_labels)[group_ids][top]
        counts = np.stack([np.bincount(row, minlength=num_classes) for row in shuffled])
        pref = UnitPreference(top, counts.argmax(1), counts.max(1), dead)
        for t in thresholds:
            totals[t].append(len(preferred_classes(pref, t)))
    k = top.shape[1]
    return {f"top{k}_{t}": float(np.mean(v)) for t, v in totals.items()}


def selectivity(activations: np.ndarray, pref: UnitPreference) -> np.ndarray:
    """How far each unit's top-k activations stand out: (mean of top k - mean) / std, [D]."""
    acts = np.asarray(activations, np.float64)
    top_mean = np.take_along_axis(acts, pref.top_items.T, axis=0).mean(axis=0)
    std = acts.std(axis=0)
    return np.where(std > 0, (top_mean - acts.mean(axis=0)) / np.maximum(std, 1e-12), 0.0)


def most_selective_units(activations: np.ndarray, pref: UnitPreference, num_units: int = 6,
                         distinct_classes: bool = True) -> List[int]:
    """Units to show in figures: most top-k items of one class first, then most
    standing-out activations; dead units never; one unit per class if `distinct_classes`
    (as the paper's figures show one unit per concept), topped up with the rest if
    there are fewer classes than `num_units`."""
    score = selectivity(activations, pref)
    order = [int(u) for u in np.lexsort((-score, -pref.majority_count)) if not pref.dead[u]]
    if not distinct_classes:
        return order[:num_units]
    chosen, seen = [], set()
    for u in order:
        if pref.majority_class[u] not in seen:
            chosen.append(u)
            seen.add(pref.majority_class[u])
        if len(chosen) == num_units:
            return chosen
    rest = [u for u in order if u not in chosen]
    return chosen + rest[:num_units - len(chosen)]


def paper_units(modality: str) -> Dict[str, Dict[str, int]]:
    """3.5.3's counts for `modality`: {"trained": {"top5_4", "top5_3"}, "untrained": {...}}."""
    p = C.PAPER_RESULTS
    out = {}
    for net, suffix in (("trained", ""), ("untrained", "_untrained")):
        out[net] = {f"top{C.UNIT_TOP_K}_{t}": p[f"units_{modality}_top5_{t}{suffix}"]
                    for t in C.UNIT_PREFERENCE_THRESHOLDS}
    return out
