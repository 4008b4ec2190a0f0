"""Cross-modal retrieval (l3.eval.retrieval): metrics on hand-made score matrices, the
chance row against simulation, and the factorised fusion against the model's own output."""

import numpy as np
import pytest

from l3.eval import retrieval

# Rows are image queries, columns audio candidates; the partner is on the diagonal.
S = np.array([[0.9, 0.1, 0.2, 0.3],    # partner 0.9: rank 1
              [0.8, 0.5, 0.6, 0.1],    # partner 0.5: 0.8 and 0.6 above -> rank 3
              [0.3, 0.2, 0.1, 0.4],    # partner 0.1: all above -> rank 4
              [0.1, 0.2, 0.3, 0.25]])  # partner 0.25: 0.3 above -> rank 2


def test_recall_and_ranks_on_a_hand_made_matrix():
    m = retrieval.instance_metrics(S, ks=(1, 2, 3, 10))
    assert m == {"R@1": 0.25, "R@2": 0.5, "R@3": 0.75, "R@10": 1.0,
                 "median_rank": 2.5, "mean_rank": 2.5}
    # audio -> image ranks columns: partners rank 1, 1, 4, 3.
    m = retrieval.instance_metrics(S.T, ks=(1, 2, 3))
    assert m == {"R@1": 0.5, "R@2": 0.5, "R@3": 0.75, "median_rank": 2.0, "mean_rank": 2.25}


def test_ties_count_as_random_tie_breaking():
    # Query 0's partner ties with two others, nothing above: rank 1, 2 or 3 alike;
    # the other three rank 1.
    s = np.eye(4)
    s[0] = [0.5, 0.5, 0.5, 0.1]
    m = retrieval.instance_metrics(s, ks=(1, 2, 3))
    assert m["R@1"] == pytest.approx((1 / 3 + 3) / 4)
    assert m["R@2"] == pytest.approx((2 / 3 + 3) / 4)
    assert m["R@3"] == 1.0 and m["mean_rank"] == pytest.approx((2 + 3) / 4)
    # A constant scorer (a dead network) is at chance, not at R@K = 1.
    const = retrieval.instance_metrics(np.zeros((20, 20)))
    assert const["R@1"] == pytest.approx(1 / 20) and const["R@10"] == pytest.approx(10 / 20)
    assert const["median_rank"] == 10.5


def test_instance_ranks_match_sorting_without_ties():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(50, 50))
    ranks = np.array([np.flatnonzero(np.argsort(-row) == i)[0] + 1 for i, row in enumerate(s)])
    m = retrieval.instance_metrics(s, ks=(1, 5, 10))
    assert m["R@5"] == np.mean(ranks <= 5) and m["R@10"] == np.mean(ranks <= 10)
    assert m["median_rank"] == np.median(ranks) and m["mean_rank"] == np.mean(ranks)


def test_class_precision_and_map_by_hand():
    scores = np.array([[0.9, 0.8, 0.7, 0.6],
                       [0.6, 0.7, 0.8, 0.9]])
    labels_q = np.array(["a", "b"])
    labels_c = np.array(["a", "b", "a", "b"])
    m = retrieval.class_metrics(scores, labels_q, labels_c, ks=(1, 2, 3))
    # Query 0 (a): relevant at ranks 1 and 3 -> P@1 1, P@2 1/2, P@3 2/3, AP (1 + 2/3) / 2.
    # Query 1 (b): order 3, 2, 1, 0 -> b, a, b, a: the same.
    assert m["P@1"] == 1.0 and m["P@2"] == 0.5 and m["P@3"] == pytest.approx(2 / 3)
    assert m["mAP"] == pytest.approx((1 + 2 / 3) / 2)
    # A tie across the cut shares the top slot: [0.5 (rel), 0.5, 0.1, 0.0 (rel)] -> P@1 = 1/2.
    tie = retrieval.class_metrics(np.array([[0.5, 0.5, 0.1, 0.0]]), ["a"], ["a", "b", "b", "a"],
                                  ks=(1, 2))
    assert tie["P@1"] == 0.5 and tie["P@2"] == 0.5


def test_average_precision_is_scikit_learns_with_ties():
    from sklearn.metrics import average_precision_score
    rng = np.random.default_rng(2)
    for _ in range(20):
        row = rng.integers(0, 6, 30).astype(float)      # many ties
        relevant = rng.random(30) < 0.3
        assert retrieval.average_precision(row, relevant) == pytest.approx(
            average_precision_score(relevant, row))


def test_chance_row_is_the_expectation_of_random_scores():
    rng = np.random.default_rng(1)
    n = 20
    labels = np.repeat(np.arange(5), 4)     # 5 classes of 4
    draws = [retrieval.instance_metrics(rng.random((n, n)), ks=(1, 5))
             | retrieval.class_metrics(rng.random((n, n)), labels, labels, ks=(1, 5))
             for _ in range(300)]
    chance = retrieval.chance_metrics(n, labels, labels, ks=(1, 5))
    assert chance["R@1"] == 1 / 20 and chance["R@5"] == 5 / 20 and chance["median_rank"] == 10.5
    for key in ("R@1", "R@5", "mean_rank", "P@1", "P@5", "mAP"):
        simulated = np.mean([d[key] for d in draws])
        assert simulated == pytest.approx(chance[key], rel=0.05), key
    assert retrieval.expected_random_ap(1, 3) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)


def test_factorised_fusion_equals_the_models_own_output():
    """Every (image i, waveform j) pair: the factorised log-odds equal the AVC model's
    l1 - l0, and sigmoid of them its P(corresponds)."""
    import keras
    from l3.core import presets
    from l3.model import network

    keras.utils.set_random_seed(3)
    preset = presets.get_preset("small")
    model = network.build_avc_model(preset)
    nets = network.subnetworks(model)
    fusion = nets["fusion"]
    rng = np.random.default_rng(0)
    for layer in ("fc1", "fc2"):   # biases away from their zero init, so they are checked too
        kernel, bias = fusion.get_layer(layer).get_weights()
        fusion.get_layer(layer).set_weights([kernel, rng.normal(0, 0.5, bias.shape)])
    n = 5
    images = rng.random((n, preset.image_size, preset.image_size, 3)).astype(np.float32)
    waves = (0.1 * rng.standard_normal((n, preset.clip_samples))).astype(np.float32)
    v = np.asarray(nets["vision"](images, training=False))
    a = np.asarray(nets["audio"](waves, training=False))
    scores = retrieval.fusion_scores(v, a, retrieval.fusion_parts(fusion))
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    logits = np.asarray(model({"image": images[ii.ravel()], "waveform": waves[jj.ravel()]},
                              training=False)).reshape(n, n, 2)
    np.testing.assert_allclose(scores, logits[..., 1] - logits[..., 0], rtol=1e-4, atol=1e-4)
    prob = np.exp(logits[..., 1]) / np.exp(logits).sum(-1)
    np.testing.assert_allclose(1 / (1 + np.exp(-scores)), prob, atol=1e-5)
    hidden = np.maximum(np.concatenate([v[ii.ravel()], a[jj.ravel()]], 1)
                        @ fusion.get_layer("fc1").get_weights()[0], 0)
    assert 0 < (hidden > 0).mean() < 1    # some units gated off: the ReLU is exercised


def test_cosine_scores():
    v = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    a = np.array([[3.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(retrieval.cosine_scores(v, a),
                               [[1, 1 / np.sqrt(2)], [0, 1 / np.sqrt(2)], [0, 0]], atol=1e-6)


def test_embed_batches_in_order_and_advances_the_bar_by_each_batch():
    """`embed` on a network that returns its input's row sums: 10 items in batches of 4 come
    back in order, and the progress bar advances 4, 4, 2 (a bar counting batches, or a last
    batch dropped, fails)."""
    from tqdm import tqdm

    class RowSums:
        def __call__(self, x, training):
            assert training is False
            return np.asarray(x).sum(axis=1, keepdims=True)

    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    bar = tqdm(total=10, disable=True)
    steps = []
    bar.update = steps.append
    out = retrieval.embed(RowSums(), x, batch_size=4, bar=bar)
    np.testing.assert_array_equal(out[:, 0], x.sum(axis=1))
    assert steps == [4, 4, 2]
