"""The project's SVM solver against scikit-learn's LinearSVC (liblinear) on a realistic problem.

2,000 subclip rows x 6,144-D (the paper's audio feature size), 10 classes,
correlated rectified features (the transfer benchmark's generator), z-scored
as the protocol does. Both sides minimise the L2-regularised squared hinge,
one vs rest, in the primal. liblinear regularises its bias as one more
feature of value `intercept_scaling`; with intercept_scaling = 100 that
penalty is 0.5 (b / 100)^2, negligible, so it solves (to within it) our
objective with an unregularised bias. Objectives are compared by evaluating
*our* objective at both solutions.
"""

import numpy as np
import pytest
from sklearn.svm import LinearSVC

from benchmarks.bench_transfer_svm import synthetic_features
from l3.eval.transfer import linear_svm, protocol


@pytest.fixture(scope="module")
def problem():
    x, labels = synthetic_features(300, 10, 6144, 10, seed=1)
    train = np.arange(300) < 200  # 200 clips x 10 subclips = 2000 training rows
    z = protocol.fit_zscore(x[train])
    return (z.apply(x[train]), np.repeat(labels[train], 10),
            z.apply(x[~train]), np.repeat(labels[~train], 10))


def test_objective_and_predictions_match_liblinear(problem):
    xtr, ytr, xte, yte = problem
    assert xtr.shape == (2000, 6144) and len(np.unique(ytr)) == 10
    c = 1e-4  # the middle of the default grid
    ours = linear_svm.fit_ova_svm(xtr, ytr, c)
    svc = LinearSVC(C=c, dual=False, loss="squared_hinge", penalty="l2", tol=1e-5,
                    intercept_scaling=100.0, max_iter=2000).fit(xtr, ytr)
    np.testing.assert_array_equal(svc.classes_, ours.classes)
    theirs = linear_svm.OvaSVM(svc.coef_.T.astype(np.float32), svc.intercept_.astype(np.float32),
                               svc.classes_, c, {})
    f_ours = linear_svm.objective(ours, xtr, ytr)
    f_theirs = linear_svm.objective(theirs, xtr, ytr)
    np.testing.assert_allclose(f_ours, f_theirs, rtol=1e-3)
    assert np.all(f_ours <= f_theirs * (1 + 1e-4))  # theirs also pays a (tiny) bias penalty
    agree = np.mean(ours.predict(xte) == svc.predict(xte))
    assert agree >= 0.99, agree
