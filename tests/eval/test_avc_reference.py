"""`l3.eval.avc.evaluate_avc` against the numpy reference (tests/fixtures/avc_reference.py).

A seeded small model whose fc2 is scaled up and re-centred (its bias moved so
that the decision threshold falls in the widest gap between the middle
pairs' logits), so that P(corresponds) spreads well away from 0.5 on both
sides (a random-weight model's sits at 0.5 +- 1e-3, where the export's
float32 round-off could flip a decision), exported and evaluated on labelled
shards. Accuracy, accuracy on positives and negatives, log loss and
per-class accuracy must be the reference's: a flipped P (softmax[:, 0]),
another threshold, grouping by the audio's label or pairs other than the
pipeline's fixed ones fail here.
"""

import keras
import numpy as np
import pytest

from l3 import export as export_lib
from l3.core.presets import SMALL
from l3.eval import avc as evaluate
from l3.model import network as model_lib
from tests.fixtures.avc_reference import reference_avc
from tests.fixtures.records import SyntheticCorpus


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("avc_reference")
    corpus = SyntheticCorpus(num_videos=6, seconds=2.0, fps=2.0, labels=("a", "b", "c"), seed=2)
    shards = corpus.write(str(root / "shards"), num_shards=2)
    keras.utils.set_random_seed(11)
    model = model_lib.build_avc_model(SMALL)
    fc2 = model_lib.subnetworks(model)["fusion"].get_layer("fc2")
    fc2.kernel.assign(fc2.kernel.numpy() * 200.0)
    p = reference_avc(model, shards, SMALL, num_pairs=24, seed=evaluate.DEFAULT_SEED)["probability"]
    d = np.sort(np.log(p) - np.log1p(-p))          # logit 1 - logit 0 of each pair
    middle = np.arange(6, 17)                       # a threshold with 7..17 pairs above it
    i = middle[np.argmax(d[middle + 1] - d[middle])]
    bias = fc2.bias.numpy()
    bias[1] -= (d[i] + d[i + 1]) / 2
    fc2.bias.assign(bias)
    export_lib.export_model(model, SMALL, str(root / "export"))
    want = reference_avc(model, shards, SMALL, num_pairs=24, seed=evaluate.DEFAULT_SEED)
    got = evaluate.evaluate_avc(shards, export_dir=str(root / "export"), num_pairs=24, batch_size=8)
    return got, want


def test_the_reference_is_a_meaningful_one(scored):
    _, want = scored
    p, y = want["probability"], want["label"]
    assert np.abs(p - 0.5).min() > 1e-3                 # no decision on a knife edge
    assert 0.1 < np.mean(p > 0.5) < 0.9                 # both decisions occur
    assert want["accuracy_positive"] != want["accuracy_negative"] or want["accuracy"] not in (0, 1)
    assert y.sum() == 12 and len(want["per_class"]) == 3


def test_evaluate_avc_equals_the_numpy_reference(scored):
    got, want = scored
    assert got["num_pairs"] == want["num_pairs"] == 24
    for key in ("accuracy", "accuracy_positive", "accuracy_negative"):
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    assert got["log_loss"] == pytest.approx(want["log_loss"], rel=1e-3)
    assert got["per_class"] == {k: {"accuracy": pytest.approx(v["accuracy"]), "num_pairs": v["num_pairs"]}
                                for k, v in want["per_class"].items()}
