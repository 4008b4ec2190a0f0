"""A clip's score is the mean of its subclips' scores (section 3.3; issue 23, item 1).

Hand-made subclip scores where the mean, the max and the first subclip each
pick a different class, and, through the whole protocol, the linearity that
only the mean has: a clip scores what a clip of its mean subclip scores.
"""

import numpy as np

from l3.eval.transfer import linear_svm, protocol
from l3.eval.transfer.protocol_config import SvmProtocolConfig


def _identity_svm(k):
    """An OvaSVM whose decision scores are its input: coef = I, intercept 0."""
    return linear_svm.OvaSVM(coef=np.eye(k, dtype=np.float32), intercept=np.zeros(k, np.float32),
                             classes=np.arange(k), C=1.0, info={})


def test_clip_scores_are_the_mean_not_the_max_or_the_first_subclip():
    # 2 clips x 4 subclips x 3 classes; the rows are the subclips' decision scores.
    subclips = np.array([
        [[0, 0, 2], [6, 0, 0], [0, 4, 0], [0, 4, 0]],   # mean -> 1, max -> 0, first -> 2
        [[1, 0, 0], [0, 0, 3], [0, 0, 3], [0, 5, 0]],   # mean -> 2, max -> 1, first -> 0
    ], np.float32)
    scores = protocol.clip_scores(_identity_svm(3), subclips.reshape(-1, 3), num_subclips=4)
    np.testing.assert_allclose(scores, [[1.5, 2.0, 0.5], [0.25, 1.25, 1.5]], rtol=0, atol=1e-6)
    assert scores.argmax(1).tolist() == [1, 2]
    assert subclips.max(1).argmax(1).tolist() == [0, 1]         # what a max would say
    assert subclips[:, 0].argmax(1).tolist() == [2, 0]          # what the first subclip would say


def test_protocol_scores_a_clip_as_its_mean_subclip():
    """train_and_test: scores are affine in each subclip (z-score, then x @ W + b),
    so the mean of a clip's subclip scores equals the score of its mean subclip
    repeated; a max or a first-subclip rule breaks this on mixed clips."""
    rng = np.random.default_rng(0)
    k, s, p, n = 3, 4, 6, 10
    centres = rng.normal(0, 3, (k, p))
    train_labels = np.repeat(np.arange(k), n)
    train = centres[train_labels][:, None, :] + rng.normal(0, 1, (k * n, s, p))
    # Test clips mixing classes across their subclips, and the same clips with every
    # subclip replaced by the clip's mean subclip.
    mixed = centres[rng.integers(0, k, (8, s))] + rng.normal(0, 1, (8, s, p))
    flat = np.repeat(mixed.mean(1, keepdims=True), s, axis=1)
    test = np.concatenate([mixed, flat])
    out = protocol.train_and_test(train.astype(np.float32), train_labels, test.astype(np.float32),
                                  np.zeros(len(test), int),
                                  config=SvmProtocolConfig(c_grid=(1.0,), num_subclips=s))
    scores = out["scores"]
    spread = np.abs(scores[:8]).max()
    assert spread > 0.5                                          # scores that say something
    np.testing.assert_allclose(scores[:8], scores[8:], atol=1e-4 * spread)
    # The mixed clips are mixed: their subclips do not all agree (else max == mean here).
    nearest = [np.argmin(((m[:, None] - centres) ** 2).sum(-1), 1) for m in mixed]
    assert sum(len(set(c)) > 1 for c in nearest) >= 4
