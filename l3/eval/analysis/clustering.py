"""Clustering quality of embeddings (section 3.5.3, Table 4).

The paper clusters the held-out embeddings with k-means into 64 clusters and
reports the normalised mutual information (NMI) between clusters and the
Kinetics-Sounds classes, for the trained L3-Net, the same network untrained,
and a random assignment of items to clusters.

Choices the paper leaves open (recorded in the output's `protocol`):
* NMI is scikit-learn's `normalized_mutual_info_score` with the arithmetic
  mean of the two entropies as normaliser (its default);
* k-means runs on the raw (not normalised) embeddings, k-means++ init, 10
  restarts, seeded;
* random assignment draws each item's cluster uniformly from k, and the score
  is the mean over `repeats` draws. It is not 0 on finite data: with 64
  clusters, 34 classes and ~1.9k items it is about 0.165, the paper's row.
With fewer items than clusters, k becomes the number of items.

k-means runs with one BLAS/OpenMP thread by default: on a busy machine the
threads' spin-waiting made it 8x slower (2000 x 512, k = 64: 22 s with two
threads on the 2-core development machine under load, 2.7 s with one).
"""

from typing import Dict, Optional

import numpy as np
from sklearn import cluster as sk_cluster
from sklearn import metrics
from threadpoolctl import threadpool_limits

from l3.core import constants as C


def nmi(labels: np.ndarray, assignments: np.ndarray) -> float:
    """Normalised mutual information of two labellings of the same items, in [0, 1]."""
    return float(metrics.normalized_mutual_info_score(labels, assignments,
                                                      average_method="arithmetic"))


def effective_clusters(k: int, num_items: int) -> int:
    """k, capped at the number of items (k-means cannot make more clusters than points)."""
    if k < 1:
        raise ValueError(f"need at least one cluster, got {k}")
    return max(1, min(k, num_items))


def kmeans(embeddings: np.ndarray, k: int = C.KMEANS_CLUSTERS, seed: int = 0,
           n_init: int = 10, threads: Optional[int] = 1) -> np.ndarray:
    """k-means cluster index per item: [n, D] -> int [n] (k capped at n).

    `threads` caps BLAS/OpenMP threads (None: library default)."""
    x = np.asarray(embeddings, np.float64)
    k = effective_clusters(k, len(x))
    km = sk_cluster.KMeans(n_clusters=k, n_init=n_init, random_state=seed)
    with threadpool_limits(limits=threads):
        return km.fit_predict(x)


def random_assignment_nmi(labels: np.ndarray, k: int = C.KMEANS_CLUSTERS, seed: int = 0,
                          repeats: int = 10) -> Dict[str, float]:
    """NMI of uniformly random cluster assignments: {"mean", "std"} over `repeats` draws."""
    labels = np.asarray(labels)
    k = effective_clusters(k, len(labels))
    rng = np.random.default_rng(seed)
    scores = [nmi(labels, rng.integers(0, k, len(labels))) for _ in range(repeats)]
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores))}


def clustering_nmi(embeddings: np.ndarray, labels: np.ndarray, k: int = C.KMEANS_CLUSTERS,
                   seed: int = 0) -> float:
    """NMI between k-means clusters of `embeddings` [n, D] and `labels` [n]."""
    return nmi(labels, kmeans(embeddings, k, seed))


def small_sample_warning(num_items: int, k: int) -> str:
    """A note when there are too few items per cluster for NMI to separate networks ("" if fine)."""
    k_eff = effective_clusters(k, num_items)
    if k_eff >= num_items:
        return (f"{num_items} items for {k} clusters: every item is its own cluster, so NMI is "
                "the same for every network; lower the number of clusters or add items")
    if num_items < 4 * k_eff:
        return (f"only {num_items / k_eff:.1f} items per cluster: every NMI is inflated; "
                "compare with the random-assignment row, not with the paper's numbers")
    return ""


def nmi_report(embeddings: Dict[str, Dict[str, np.ndarray]], labels: np.ndarray,
               k: int = C.KMEANS_CLUSTERS, seed: int = 0,
               repeats: int = 10) -> Dict[str, object]:
    """Table 4 for our model.

    Args:
      embeddings: {modality: {"trained": [n, D], "untrained": [n, D]}}.
      labels: int [n] class per item.
    Returns:
      {"num_clusters": k used, "requested_clusters": k, "num_items": n,
       "protocol": str, "warning": str (only if too few items per cluster),
       modality: {"trained", "untrained", "random_assignment",
       "random_assignment_std"}} (random assignment depends only on the labels and
       k, so it is the same number under every modality, as in the paper).
    """
    labels = np.asarray(labels)
    rand = random_assignment_nmi(labels, k, seed, repeats)
    out: Dict[str, object] = {
        "num_clusters": effective_clusters(k, len(labels)),
        "requested_clusters": int(k),
        "num_items": int(len(labels)),
        "protocol": ("k-means (k-means++, 10 restarts, seeded) on raw embeddings; "
                     "sklearn NMI, arithmetic normalisation; random assignment: "
                     f"mean of {repeats} uniform draws"),
    }
    warning = small_sample_warning(len(labels), k)
    if warning:
        out["warning"] = warning
    for modality, nets in embeddings.items():
        row = {name: clustering_nmi(emb, labels, k, seed) for name, emb in nets.items()}
        row["random_assignment"] = rand["mean"]
        row["random_assignment_std"] = rand["std"]
        out[modality] = row
    return out


def paper_nmi(modality: str) -> Optional[Dict[str, float]]:
    """Table 4's row for `modality` ("vision" or "audio")."""
    p = C.PAPER_RESULTS
    return {"trained": p[f"nmi_{modality}_trained"], "untrained": p[f"nmi_{modality}_untrained"],
            "random_assignment": p["nmi_random_assignment"]}
