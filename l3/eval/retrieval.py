"""Cross-modal retrieval: image -> audio and audio -> image among N held-out items.

Item i is a frame and the 1 s of audio centred on it (`l3.eval.analysis.data.load_items`);
the true partner of frame i is clip i, "the same moment of the same video". Every
query is scored against all N candidates of the other modality and ranked.

Scorers, on the 2 x [N, D] embeddings (pool4) of the two towers:

* **fusion** (the network's own answer): the log-odds of "corresponds",
  s(v, a) = l1 - l0 = dw . relu(W_v v + W_a a + b1) + db, where fc1's kernel is
  [W_v; W_a] (the concatenation is vision first), dw = fc2[:, 1] - fc2[:, 0] and
  db = b2[1] - b2[0]. Ranking by it is ranking by P(corresponds) = sigmoid(s).
  fc1 is linear in the concatenated embeddings, so W_v v_i + b1 and W_a a_j are
  computed once per item (2N products of D x H) and only relu and a dot with dw
  run over the N x N pairs: N^2 H multiply-adds instead of N^2 (2D + 1) H.
* **cosine**: v . a / (|v| |a|) (CAV-MAE's retrieval scorer). L3's two towers are
  not trained into one space (the fusion MLP compares them), so this is a control.

Metrics (CAV-MAE's `compute_metrics`, src/retrieval.py, with ties made fair):

* instance: the rank of the true partner, 1 + (candidates scoring higher) + half
  the other candidates scoring the same (its expected rank under random
  tie-breaking); R@K = expected share of queries whose partner is in the top K
  (clip((K - higher) / (ties + 1), 0, 1) per query); median and mean rank.
* class-level (when every item has a label): precision@K, the expected share of
  the top K with the query's label (ties shared pro rata), and mAP, the mean over
  queries of average precision with scikit-learn's convention
  (`average_precision_score`, every candidate of the query's class relevant,
  the partner included; `average_precision`).
* chance: exact expectations for random scores: R@K = K / N, median and mean rank
  (N + 1) / 2, P@K = mean over queries of n_c / N and
  E[AP] = (H_N + (R - 1) / (N - 1) (N - H_N)) / N with R = n_c relevant of N
  (H_N the harmonic number).
"""

import dataclasses
from typing import Dict, Optional, Sequence

import numpy as np
from tqdm import tqdm

DIRECTIONS = ("image_to_audio", "audio_to_image")
KS = (1, 5, 10)
# Elements of the [rows, N, H] hidden block scored at once (64 MB in float32).
_BLOCK_ELEMENTS = 1 << 24


@dataclasses.dataclass(frozen=True)
class FusionParts:
    """The fusion head split by modality. w_vision, w_audio [D, H], bias [H], delta_w [H]."""

    w_vision: np.ndarray
    w_audio: np.ndarray
    bias: np.ndarray
    delta_w: np.ndarray
    delta_b: float


def fusion_parts(fusion) -> FusionParts:
    """Reads fc1 and fc2 of a fusion model (`l3.model.network.build_fusion`) by layer name."""
    kernel, bias = (np.asarray(w, np.float32) for w in fusion.get_layer("fc1").get_weights())
    k2, b2 = (np.asarray(w, np.float32) for w in fusion.get_layer("fc2").get_weights())
    d = kernel.shape[0] // 2
    return FusionParts(w_vision=kernel[:d], w_audio=kernel[d:], bias=bias,
                       delta_w=k2[:, 1] - k2[:, 0], delta_b=float(b2[1] - b2[0]))


def fusion_scores(vision: np.ndarray, audio: np.ndarray, parts: FusionParts) -> np.ndarray:
    """Log-odds of correspondence of every (vision i, audio j): float32 [Nv, Na].

    vision [Nv, D], audio [Na, D] embeddings. Each side's share of fc1 is computed
    once; the N x N work is relu and one dot product per pair (module docstring).
    """
    import tensorflow as tf  # noqa: PLC0415 (multi-threaded elementwise work; 5x numpy's here)
    pv = tf.constant(np.asarray(vision, np.float32) @ parts.w_vision + parts.bias)   # [Nv, H]
    pa = tf.constant(np.asarray(audio, np.float32) @ parts.w_audio)                  # [Na, H]
    dw = tf.constant(parts.delta_w)
    rows = max(1, _BLOCK_ELEMENTS // max(1, int(pa.shape[0] * pa.shape[1])))
    blocks = [tf.linalg.matvec(tf.nn.relu(pv[r:r + rows, None, :] + pa[None]), dw)   # [rows, Na]
              for r in range(0, int(pv.shape[0]), rows)]
    return (tf.concat(blocks, 0) + parts.delta_b).numpy() if blocks else np.zeros(
        (0, len(pa)), np.float32)


def cosine_scores(vision: np.ndarray, audio: np.ndarray) -> np.ndarray:
    """Cosine similarity of every (vision i, audio j): float32 [Nv, Na] (0 for a zero vector)."""
    def unit(x):
        x = np.asarray(x, np.float32)
        n = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(n > 0, n, 1.0)
    return unit(vision) @ unit(audio).T


# --- metrics --------------------------------------------------------------------------

def partner_ranks(scores: np.ndarray):
    """For query i (row) with true partner i (the diagonal): (higher [N], ties [N]), the
    candidates scoring strictly more than the partner and the others scoring the same."""
    s = np.asarray(scores, np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"instance retrieval needs a square score matrix, got {s.shape}")
    diag = np.diag(s)[:, None]
    return (s > diag).sum(1), (s == diag).sum(1) - 1


def instance_metrics(scores: np.ndarray, ks: Sequence[int] = KS) -> Dict[str, float]:
    """R@K, median and mean rank of the diagonal partners (rows are queries; see the
    module docstring for ties)."""
    higher, ties = partner_ranks(scores)
    ranks = higher + 1 + ties / 2.0
    out = {f"R@{k}": float(np.mean(np.clip((k - higher) / (ties + 1.0), 0.0, 1.0))) for k in ks}
    out.update(median_rank=float(np.median(ranks)), mean_rank=float(np.mean(ranks)))
    return out


def _precision_at(row: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Expected precision of the top k of `row` under random tie-breaking."""
    k = min(k, len(row))
    kth = np.sort(row)[::-1][k - 1]
    above, block = row > kth, row == kth
    hits = relevant[above].sum() + (k - above.sum()) * relevant[block].sum() / block.sum()
    return float(hits / k)


def average_precision(row: np.ndarray, relevant: np.ndarray) -> float:
    """Average precision of ranking candidates by `row` (scikit-learn's definition:
    sum over distinct score thresholds of (recall step) x precision; a tied block
    counts as one step). 0 when nothing is relevant."""
    relevant = np.asarray(relevant, bool)
    total = relevant.sum()
    if not total:
        return 0.0
    order = np.argsort(-np.asarray(row, np.float64), kind="stable")
    ranked, hits = np.asarray(row, np.float64)[order], relevant[order]
    ends = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))   # last of each tie block
    tp = np.cumsum(hits)[ends]
    precision, recall = tp / (ends + 1.0), tp / total
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def class_metrics(scores: np.ndarray, query_labels, candidate_labels,
                  ks: Sequence[int] = KS) -> Dict[str, float]:
    """Class-level retrieval: P@K and mAP, a candidate relevant when its label is the query's."""
    s = np.asarray(scores, np.float64)
    q, c = np.asarray(query_labels), np.asarray(candidate_labels)
    precision = {k: [] for k in ks}
    aps = []
    for i, row in enumerate(s):
        relevant = c == q[i]
        for k in ks:
            precision[k].append(_precision_at(row, relevant, k))
        aps.append(average_precision(row, relevant))
    out = {f"P@{k}": float(np.mean(v)) for k, v in precision.items()}
    out["mAP"] = float(np.mean(aps))
    return out


def expected_random_ap(relevant: int, n: int) -> float:
    """E[average precision] of a uniformly random ranking of n candidates, `relevant` of them
    relevant: (H_n + (R - 1) / (n - 1) (n - H_n)) / n (module docstring)."""
    if relevant <= 0:
        return 0.0
    h = float(np.sum(1.0 / np.arange(1, n + 1)))
    if n == 1:
        return 1.0
    return (h + (relevant - 1) / (n - 1) * (n - h)) / n


def chance_metrics(n: int, query_labels=None, candidate_labels=None,
                   ks: Sequence[int] = KS) -> Dict[str, float]:
    """The metrics' expectations for random scores over n candidates (module docstring)."""
    out = {f"R@{k}": min(k, n) / n for k in ks}
    out.update(median_rank=(n + 1) / 2.0, mean_rank=(n + 1) / 2.0)
    if query_labels is not None:
        c = np.asarray(candidate_labels)
        counts = np.array([(c == label).sum() for label in np.asarray(query_labels)])
        for k in ks:
            out[f"P@{k}"] = float(np.mean(counts / n))
        out["mAP"] = float(np.mean([expected_random_ap(int(r), n) for r in counts]))
    return out


def retrieval_report(vision: np.ndarray, audio: np.ndarray, score_fn,
                     labels: Optional[Sequence] = None, ks: Sequence[int] = KS) -> Dict[str, Dict]:
    """{direction: metrics} of one scorer: `score_fn(vision, audio)` -> [N, N], rows = images.

    audio_to_image ranks the same matrix's columns. `labels` [N] (one per item) adds the
    class-level metrics.
    """
    scores = score_fn(vision, audio)
    out = {}
    for direction, matrix in (("image_to_audio", scores), ("audio_to_image", scores.T)):
        metrics = instance_metrics(matrix, ks)
        if labels is not None:
            metrics.update(class_metrics(matrix, labels, labels, ks))
        out[direction] = metrics
    return out


# --- on records and an export -----------------------------------------------------------

SCORERS = ("fusion", "cosine")
NETWORKS = ("trained", "untrained")


def embed(network, inputs: np.ndarray, batch_size: int = 64, bar=None) -> np.ndarray:
    """A tower's pool4 embedding of float32 inputs, in batches: [n, D]. `bar`: a tqdm bar
    to advance by each batch's size."""
    inputs = np.asarray(inputs, np.float32)
    out = []
    for i in range(0, len(inputs), batch_size):
        out.append(np.asarray(network(inputs[i:i + batch_size], training=False)))
        if bar is not None:
            bar.update(len(out[-1]))
    return np.concatenate(out)


def row_name(network: str, scorer: str) -> str:
    """The row of a (network, scorer): "trained" for the fusion scorer, "trained_cosine" ..."""
    return network if scorer == "fusion" else f"{network}_{scorer}"


def evaluate_retrieval(export_dir: str, data_pattern: str, *, max_items: Optional[int] = 1000,
                       items_per_video: int = 1, scorers: Sequence[str] = SCORERS,
                       untrained: bool = True, seed: int = 0, batch_size: int = 64,
                       log=None, progress: bool = False) -> Dict:
    """Image -> audio and audio -> image retrieval on held-out records, for an export.

    Reads up to `max_items` items (`items_per_video` frames per video, each with its
    centred 1 s of audio; unlabelled videos too), embeds them with the export's
    trained towers (avc.keras) and, with `untrained`, with a freshly initialised
    network of the same preset (Keras seeded with `seed`), and scores every pair with
    each of `scorers`. Returns {"image_to_audio": {row: metrics}, "audio_to_image":
    {...}, ...} with rows "trained", "untrained" (fusion scorer), "trained_cosine",
    "untrained_cosine" and "chance"; class-level metrics when every item has a label.
    `progress`: a progress bar (stderr) over the embedding of every item by each tower.
    """
    import time  # noqa: PLC0415
    from l3.core import errors  # noqa: PLC0415
    from l3.eval.analysis import data, encoders  # noqa: PLC0415 (TensorFlow)
    from l3.model import network as model_lib  # noqa: PLC0415

    unknown = sorted(set(scorers) - set(SCORERS))
    if unknown or not scorers:
        raise errors.UsageError(f"unknown scorers {unknown or list(scorers)}; choose from {list(SCORERS)}")
    log = log or (lambda message: None)
    start = time.time()
    preset = encoders.export_preset(export_dir)
    models = {"trained": encoders.exported_avc_model(export_dir)}
    items = data.load_items(data_pattern, preset, max_items=max_items,
                            items_per_video=items_per_video, labelled_only=False)
    names = items.label_names
    labels = np.asarray(names) if all(names) else None
    log(f"{len(items)} items from {len(set(items.video_ids))} videos, preset {preset.name}"
        + ("" if labels is None else f", {len(set(names))} classes"))
    if untrained:
        models["untrained"] = encoders.untrained_avc_model(preset, seed)
    seconds = {"load": round(time.time() - start, 2)}
    result: Dict = {"export_dir": export_dir, "data_pattern": data_pattern, "preset": preset.name,
                    "num_items": len(items), "num_videos": len(set(items.video_ids)),
                    "items_per_video": items_per_video, "bad_frames": items.bad_frames,
                    "class_level": labels is not None,
                    "scorers": list(scorers), "seed": seed}
    for direction in DIRECTIONS:
        result[direction] = {}
    bar = tqdm(total=2 * len(models) * len(items), desc="embedding (both towers)", unit="item",
               disable=not progress)
    for name, model in models.items():
        nets = model_lib.subnetworks(model)
        t = time.time()
        vision = embed(nets[model_lib.VISION], items.images, batch_size, bar)
        audio = embed(nets[model_lib.AUDIO], items.waveforms, batch_size, bar)
        seconds[f"embed_{name}"] = round(time.time() - t, 2)
        for scorer in scorers:
            t = time.time()
            if scorer == "fusion":
                parts = fusion_parts(nets["fusion"])
                report = retrieval_report(vision, audio, lambda v, a: fusion_scores(v, a, parts), labels)
            else:
                report = retrieval_report(vision, audio, cosine_scores, labels)
            seconds[f"score_{row_name(name, scorer)}"] = round(time.time() - t, 2)
            for direction in DIRECTIONS:
                result[direction][row_name(name, scorer)] = report[direction]
    bar.close()
    chance = chance_metrics(len(items), labels, labels)
    for direction in DIRECTIONS:
        result[direction]["chance"] = chance
    seconds["total"] = round(time.time() - start, 2)
    result["seconds"] = seconds
    return result


def format_table(result: Dict) -> str:
    """Plain-text table: per direction, each row's R@1/5/10, median rank (and P@10, mAP)."""
    class_level = result.get("class_level")
    cols = ["R@1", "R@5", "R@10", "median_rank"] + (["P@10", "mAP"] if class_level else [])
    lines = [f"retrieval among {result['num_items']} held-out items ({result['num_videos']} videos; "
             "instance: the same moment of the same video)"]
    for direction in DIRECTIONS:
        lines.append("")
        lines.append(f"{direction.replace('_', ' ')}: " + "".join(f"{c:>13s}" for c in cols))
        for row, m in result[direction].items():
            lines.append(f"  {row:22s}" + "".join(
                f"{m[c]:13.1f}" if c == "median_rank" else f"{m[c]:13.3f}" for c in cols))
    return "\n".join(lines)
