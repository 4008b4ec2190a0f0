"""One-vs-all linear SVMs, all classes solved together with dense BLAS.

The paper (section 3.3) trains "a multi-class one-vs-all linear SVM" on
z-scored subclip features. For class k, with labels y_ik = +1 for its samples
and -1 for the others, this module minimises the L2-regularised squared-hinge
objective (liblinear's default, i.e. `sklearn.svm.LinearSVC`'s loss)

    f_k(w, b) = 0.5 ||w||^2 + C sum_i max(0, 1 - y_ik (x_i . w + b))^2

with an *unregularised* bias b (liblinear regularises it as one more
feature; z-scored features make either choice harmless, the textbook SVM does
not).

Why not liblinear. On ESC-50-sized problems (16k subclips x 6144-D, 50
classes) `LinearSVC(dual=False)` converts the dense matrix to its sparse node
format (~1.6 GB) and solves the 50 binary problems one after another, single
threaded: 12-60 s a class here (2 shared cores), 10-50 minutes per fit, and
the protocol needs dozens of fits (C grid x inner folds x outer folds). Here
the same truncated Newton method liblinear uses (Newton-CG on the primal,
Lin, Weng & Keerthi 2008) runs on all K classes at once, so each
Hessian-vector product is two float32 GEMMs of [n, d] x [d, K], and each
class stops on its own. CG is preconditioned with the exact Hessian on the
top-64 singular subspace of x (`Subspace`): correlated features make those
directions the stiff ones; at small C this cuts CG work 3-4x. The line search
is exact: along a Newton direction the objective is a convex piecewise
quadratic in the step, found by safeguarded 1-D Newton on n x K vectors (no
GEMM).

Measured (`benchmarks/bench_transfer_svm.py`, 1600 training clips x 10
subclips x 6144-D, 50 classes, AMD EPYC, 2 cores shared with other jobs, 1
BLAS thread): cold fits of 15-35 s at C = 1e-5, 34-62 s at 1e-4, 128-175 s at
1e-3; one whole ESC-50 fold (3-fold C-selection CV over 1e-5, 1e-4, 1e-3 with
warm starts, then the final fit) 160 s, against ~12 min for a *single*
liblinear fit at C = 1e-5 (14.4 s a class). Every result's `protocol` records
its own fit times.

Stopping rule: a class stops when a Newton step lowered its objective by less
than `tol` (relative; default 1e-4): near the optimum Newton converges
superlinearly, so the remaining gap is far below that. We do not use
liblinear's gradient rule (||grad|| <= eps ||grad at 0||): its scale grows with
C * n, and on correlated synthetic features (6000 x 2048) at C = 0.1 it
stopped with the objective still 8x its optimum (a loose, C-dependent early
stop, not an SVM).
"""

import dataclasses
import time
from typing import Optional

import numpy as np

DEFAULT_TOL = 1e-4       # relative objective decrease of a Newton step; see module docstring
DEFAULT_MAX_NEWTON = 100
DEFAULT_MAX_CG = 250
CG_ETA = 0.1             # inexact Newton: CG stops at ||r|| <= eta ||g|| (liblinear's 0.1)
DEFAULT_PRECONDITION_RANK = 64


@dataclasses.dataclass
class Subspace:
    """Approximate top-r right singular vectors V [d, r] of x, and U = x V [n, r].

    Conv features are strongly correlated: a few directions carry most of
    X^T X, and they make CG slow (the Hessian's large eigenvalues). The
    preconditioner inverts the Hessian exactly on span(V) (plus the bias) and
    leaves the rest alone. Randomised range finder with one power iteration:
    ~4 GEMMs of [n, d] x [d, r + 8], once per training matrix.
    """

    v: np.ndarray
    u: np.ndarray

    @staticmethod
    def of(x: np.ndarray, rank: int, seed: int = 0) -> "Subspace":
        rng = np.random.default_rng(seed)
        omega = rng.standard_normal((x.shape[1], rank + 8)).astype(np.float32)
        z = x.T @ (x @ omega)
        q = np.linalg.qr(z.astype(np.float64))[0]
        z = x.T @ (x @ q.astype(np.float32))
        q = np.linalg.qr(z.astype(np.float64))[0]
        u = (x @ q.astype(np.float32)).astype(np.float64)
        _, vecs = np.linalg.eigh(u.T @ u)  # Rayleigh-Ritz: keep the top `rank`
        top = vecs[:, ::-1][:, :rank]
        return Subspace(q @ top, u @ top)


def subspace_for(x: np.ndarray, rank: int = DEFAULT_PRECONDITION_RANK) -> Optional[Subspace]:
    """`Subspace.of(x, rank)`, or None when rank is 0 or too large for x to be worth it."""
    if 0 < rank and 4 * rank < min(x.shape):
        return Subspace.of(np.ascontiguousarray(x, np.float32), rank)
    return None


class _SubspacePreconditioner:
    """M^-1 = (I - Q Q^T) + Q (Q^T H_k Q)^-1 Q^T per class, Q = blockdiag(V, 1) (the bias)."""

    def __init__(self, basis: Subspace, dmask: np.ndarray, c: float):
        n, r = basis.u.shape
        u_aug = np.hstack([basis.u, np.ones((n, 1))])
        eye = np.diag(np.append(np.ones(r), 0.0))
        blocks = np.stack([eye + 2.0 * c * (u_aug * dmask[:, j:j + 1]).T @ u_aug
                           for j in range(dmask.shape[1])])
        blocks[:, r, r] += 1e-12
        self.inv = np.linalg.inv(blocks)  # [K', r + 1, r + 1]
        self.v = basis.v

    def apply(self, rw: np.ndarray, rb: np.ndarray, cols: np.ndarray):
        a = self.v.T @ rw                                   # [r, K']
        sol = np.einsum("kij,jk->ik", self.inv[cols], np.vstack([a, rb[None]]))
        return rw - self.v @ (a - sol[:-1]), sol[-1]


@dataclasses.dataclass
class OvaSVM:
    """A fitted one-vs-all linear SVM: scores = x @ coef + intercept.

    coef: float32 [d, K]; intercept: float32 [K]; classes: [K] labels.
    """

    coef: np.ndarray
    intercept: np.ndarray
    classes: np.ndarray
    C: float
    info: dict

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """float [n, d] -> float32 [n, K] one-vs-all scores."""
        return np.asarray(x, np.float32) @ self.coef + self.intercept

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes[np.argmax(self.decision_function(x), axis=1)]


def _objective(w, b, m, y, c):
    """Per-class objective [K] at margins m = xw + b (float64 [n, K])."""
    xi = np.maximum(0.0, 1.0 - y * m)
    return 0.5 * np.einsum("dk,dk->k", w, w) + c * np.einsum("nk,nk->k", xi, xi)


def _line_search(w, p, m, z, y, c, max_iter: int = 30):
    """Exact minimiser t >= 0 per class of f(w + t p) given m = x w + b, z = x p + pb.

    f(t) is convex and piecewise quadratic, so f' is monotone: safeguarded
    1-D Newton inside a bracket [lo, hi] where f'(lo) < 0 <= f'(hi).
    Returns t [K].
    """
    k = w.shape[1]
    wp = np.einsum("dk,dk->k", w, p)
    pp = np.einsum("dk,dk->k", p, p)
    yz = y * z
    lo, hi = np.zeros(k), np.full(k, np.inf)
    t = np.ones(k)
    for _ in range(max_iter):
        xi = np.maximum(0.0, 1.0 - y * (m + t * z))
        d1 = wp + t * pp - 2.0 * c * np.einsum("nk,nk->k", yz, xi)
        d2 = pp + 2.0 * c * np.einsum("nk,nk->k", z * z, xi > 0)
        neg = d1 < 0
        lo = np.where(neg, np.maximum(lo, t), lo)
        hi = np.where(neg, hi, np.minimum(hi, t))
        if np.all(np.abs(d1) <= 1e-10 * np.maximum(1.0, d2 * np.maximum(t, 1.0))):
            break
        t_new = t - d1 / np.maximum(d2, 1e-300)
        outside = (t_new <= lo) | (t_new >= hi)
        mid = np.where(np.isfinite(hi), 0.5 * (lo + hi), 2.0 * np.maximum(t, 1.0))
        t = np.where(outside, mid, t_new)
    return t


def fit_ova_svm(x: np.ndarray, labels: np.ndarray, C: float, *, tol: float = DEFAULT_TOL,
                max_newton: int = DEFAULT_MAX_NEWTON, max_cg: int = DEFAULT_MAX_CG,
                classes: Optional[np.ndarray] = None,
                warm_start: Optional["OvaSVM"] = None,
                precondition_rank: int = DEFAULT_PRECONDITION_RANK,
                basis: Optional["Subspace"] = None) -> OvaSVM:
    """Fits one squared-hinge linear SVM per class (one vs all), all at once.

    Args:
      x: float32 [n, d] features (already normalised; not copied if float32
        and C-contiguous).
      labels: [n] class labels.
      C: the SVM's C (weight of the summed squared hinge losses).
      tol: stop a class when a Newton step lowers its objective by less than
        tol * objective (or its gradient is ~0).
      classes: the label set in output order (default: sorted unique labels).
      warm_start: a previous fit (same classes and d) to start from, e.g. the
        solution for the previous C of a grid.
      precondition_rank: r > 0 preconditions CG with the exact Hessian on
        the top-r right singular subspace of x (see `Subspace`); 0: plain CG.
      basis: a `Subspace` of this x computed before (reused across a C grid).
    Returns:
      `OvaSVM` with `info` = {"newton_iterations", "hessian_products",
      "converged" (all classes), "seconds"}.
    """
    start = time.perf_counter()
    x = np.ascontiguousarray(x, np.float32)
    n, d = x.shape
    classes = np.unique(labels) if classes is None else np.asarray(classes)
    y = np.where(np.asarray(labels)[:, None] == classes[None, :], 1.0, -1.0)  # [n, K]
    k = len(classes)
    c = float(C)

    def gemm_x(v):  # [d, K'] float64 -> x @ v float64 [n, K']
        return (x @ v.astype(np.float32)).astype(np.float64)

    def gemm_xt(u):  # [n, K'] float64 -> x.T @ u float64 [d, K']
        return (x.T @ u.astype(np.float32)).astype(np.float64)

    # Scale of the (secondary) exact-solution test: ||grad at (0, 0)|| = ||2C [x^T y ; sum y]||.
    g0_norm = np.linalg.norm(2.0 * c * np.vstack([gemm_xt(y), y.sum(0, keepdims=True)]), axis=0)

    if warm_start is not None:
        w = warm_start.coef.astype(np.float64).copy()
        b = warm_start.intercept.astype(np.float64).copy()
        m = gemm_x(w) + b
    else:
        w, b, m = np.zeros((d, k)), np.zeros(k), np.zeros((n, k))

    if basis is None:
        basis = subspace_for(x, precondition_rank)
    newton_iters = hv_products = 0
    converged = np.zeros(k, bool)
    f = _objective(w, b, m, y, c)
    for _ in range(max_newton):
        act = np.flatnonzero(~converged)
        xi = np.maximum(0.0, 1.0 - y[:, act] * m[:, act])
        yxi = y[:, act] * xi
        gw = w[:, act] - 2.0 * c * gemm_xt(yxi)
        gb = -2.0 * c * yxi.sum(0)
        g_norm = np.sqrt(np.einsum("dk,dk->k", gw, gw) + gb * gb)
        exact = g_norm <= 1e-9 * g0_norm[act]
        converged[act[exact]] = True
        gw, gb, g_norm, xi = gw[:, ~exact], gb[~exact], g_norm[~exact], xi[:, ~exact]
        act = act[~exact]
        if act.size == 0:
            break
        newton_iters += 1
        # Newton direction for the unconverged classes by (preconditioned) CG on
        # H = [[I + 2C X^T D X, 2C X^T D 1], [2C 1^T D X, 2C 1^T D 1]], D = 1[xi > 0].
        dmask = (xi > 0).astype(np.float64)
        precond = None if basis is None else _SubspacePreconditioner(basis, dmask, c)
        rw, rb = -gw, -gb
        zw, zb = (rw, rb) if precond is None else precond.apply(rw, rb, np.arange(act.size))
        pw, pb = zw.copy(), zb.copy()
        sw, sb = np.zeros_like(rw), np.zeros_like(rb)
        rz = np.einsum("dk,dk->k", rw, zw) + rb * zb
        rr = np.einsum("dk,dk->k", rw, rw) + rb * rb
        stop = (CG_ETA * g_norm) ** 2
        live = rr > stop
        for _ in range(max_cg):
            cols = np.flatnonzero(live)
            if cols.size == 0:
                break
            hv_products += 1
            u = dmask[:, cols] * (gemm_x(pw[:, cols]) + pb[cols])
            hw = pw[:, cols] + 2.0 * c * gemm_xt(u)
            hb = 2.0 * c * u.sum(0)
            php = np.einsum("dk,dk->k", pw[:, cols], hw) + pb[cols] * hb
            alpha = rz[cols] / np.maximum(php, 1e-300)
            sw[:, cols] += alpha * pw[:, cols]
            sb[cols] += alpha * pb[cols]
            rw[:, cols] -= alpha * hw
            rb[cols] -= alpha * hb
            if precond is None:
                zw_c, zb_c = rw[:, cols], rb[cols]
            else:
                zw_c, zb_c = precond.apply(rw[:, cols], rb[cols], cols)
            rz_new = np.einsum("dk,dk->k", rw[:, cols], zw_c) + rb[cols] * zb_c
            beta = rz_new / np.maximum(rz[cols], 1e-300)
            pw[:, cols] = zw_c + beta * pw[:, cols]
            pb[cols] = zb_c + beta * pb[cols]
            rz[cols] = rz_new
            rr[cols] = np.einsum("dk,dk->k", rw[:, cols], rw[:, cols]) + rb[cols] ** 2
            live[cols] = rr[cols] > stop[cols]
        z = gemm_x(sw) + sb
        t = _line_search(w[:, act], sw, m[:, act], z, y[:, act], c)
        w[:, act] += t * sw
        b[act] += t * sb
        m[:, act] += t * z
        f_new = _objective(w[:, act], None, m[:, act], y[:, act], c)
        converged[act] = f[act] - f_new <= tol * np.abs(f_new)  # Newton: the rest is far smaller
        f[act] = f_new
    info = {"newton_iterations": newton_iters, "hessian_products": hv_products,
            "converged": bool(np.all(converged)), "seconds": time.perf_counter() - start}
    return OvaSVM(w.astype(np.float32), b.astype(np.float32), classes, c, info)


def objective(model: OvaSVM, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The per-class objective f_k [K] of `model` on (x, labels) (tests, diagnostics)."""
    y = np.where(np.asarray(labels)[:, None] == model.classes[None, :], 1.0, -1.0)
    m = model.decision_function(x).astype(np.float64)
    return _objective(model.coef.astype(np.float64), None, m, y, model.C)
