"""The knobs of the audio linear-SVM protocol, in one object, and the description it implies.

`SvmProtocolConfig` travels from the `l3-esc50` / `l3-dcase` flags (or a
caller such as the demo) through `esc50.run`, `dcase.run`,
`protocol.evaluate_clips`, `run_folds`, `train_and_test` and `select_c`;
`protocol_description` turns it into the `protocol` block of a results JSON.
"""

import dataclasses
from typing import Optional, Tuple

from l3.eval.transfer import linear_svm
from l3.eval.transfer.encoders import DEFAULT_BATCH_SIZE, FEATURE, Encoder

# C multiplies a sum of n squared hinges of z-scored features with ||x||^2 ~ P
# (6144): C = 1 / P is liblinear's default C = 1 on unit-norm features, so this
# grid spans ~0.06x to 6x of it. Larger C is nearly hard-margin (16k subclips
# in 6144-D are close to separable) and costly: on the ESC-50-sized benchmark
# a cold fit takes 21 / 64 / 262 Hessian products at C = 1e-5 / 1e-4 / 1e-3
# and over a thousand at 1e-2 (benchmarks/bench_transfer_svm.py). Smaller
# features (the small preset's 768-D) put their optimum higher: the search
# extends past the grid's edges by itself (DEFAULT_C_EXTENSIONS).
DEFAULT_C_GRID = (1e-5, 1e-4, 1e-3)
# When the CV's best C is strictly best at an end of the grid, C-selection
# steps one grid ratio (10x) further that way, up to this many times, so that
# the chosen C is interior instead of truncated by the grid (`protocol.select_c`).
DEFAULT_C_EXTENSIONS = 3
DEFAULT_INNER_FOLDS = 3


@dataclasses.dataclass(frozen=True)
class SvmProtocolConfig:
    """How features are extracted and the SVMs fitted (the `l3-esc50` flags of the same names).

    Attributes:
      c_grid: SVM C values (stored sorted); C is chosen by CV inside the
        training clips; a single value skips that CV.
      c_extensions: how many times C-selection may step one grid ratio beyond
        an end of `c_grid` while the best C is strictly best there (0: never).
      inner_folds: splits of the C-selection CV.
      tol: SVM stopping tolerance (relative objective decrease of a Newton step).
      seed: seed of the C-selection CV splits.
      num_subclips: 1 s subclips per clip; None: the benchmark's paper value
        (10 for ESC-50, 60 for DCASE; see `with_default_subclips`).
      feature: the encoder output used (`conv4_2_pooled`).
      batch_size: encoder batch, in subclips.
      workers: audio decoding threads (file benchmarks).
      cache_dir: feature cache directory (keyed by weights and files); None: no cache.
      progress: show a progress bar while extracting features.
      blas_threads: limit numpy's BLAS threads (None: the library's default).
    """

    c_grid: Tuple[float, ...] = DEFAULT_C_GRID
    c_extensions: int = DEFAULT_C_EXTENSIONS
    inner_folds: int = DEFAULT_INNER_FOLDS
    tol: float = linear_svm.DEFAULT_TOL
    seed: int = 0
    num_subclips: Optional[int] = None
    feature: str = FEATURE
    batch_size: int = DEFAULT_BATCH_SIZE
    workers: int = 2
    cache_dir: Optional[str] = None
    progress: bool = False
    blas_threads: Optional[int] = None

    def __post_init__(self):
        grid = tuple(sorted(float(c) for c in self.c_grid))
        if not grid:
            raise ValueError("c_grid needs at least one C value")
        object.__setattr__(self, "c_grid", grid)  # frozen: set once, normalised
        if self.c_extensions < 0:
            raise ValueError(f"c_extensions must be >= 0, got {self.c_extensions}")

    def with_default_subclips(self, num_subclips: int) -> "SvmProtocolConfig":
        """A copy with `num_subclips` filled in when it is None."""
        return dataclasses.replace(self, num_subclips=self.num_subclips or int(num_subclips))

    def subclips(self) -> int:
        """`num_subclips`, which must be set by now (ValueError otherwise)."""
        if not self.num_subclips:
            raise ValueError("SvmProtocolConfig.num_subclips is not set")
        return int(self.num_subclips)


def protocol_description(config: SvmProtocolConfig, *, feature_dim: int, encoder: Encoder,
                         evaluation: str) -> dict:
    """The `protocol` block of a result JSON (what was done, so a number can be judged)."""
    return {
        "subclips_per_clip": config.subclips(),
        "subclip_seconds": encoder.clip_samples / encoder.sample_rate,
        "subclip_placement": "equally spaced: starts round(linspace(0, len - window, N)); "
                             "clips shorter than a window zero padded",
        "sample_rate": encoder.sample_rate,
        "feature": encoder.description.get("feature", FEATURE),
        "feature_note": "conv4_2 before ReLU, max-pooled with kernel = stride "
                        "(4x3x512 for the paper preset)",
        "feature_dim": int(feature_dim),
        "normalization": "z-score; mean and std fitted on the training clips' subclips only",
        "classifier": "one-vs-all linear SVM, L2-regularised squared hinge, unregularised bias",
        "solver": "batched primal truncated Newton (Newton-CG, exact line search), float32 BLAS, "
                  f"CG preconditioned on the top-{linear_svm.DEFAULT_PRECONDITION_RANK} singular "
                  "subspace (l3.eval.transfer.linear_svm; liblinear's L2-loss primal method, all "
                  "classes at once)",
        "tol": config.tol,
        "stopping": "per class: a Newton step lowers the objective by less than tol (relative)",
        "c_selection": {
            "method": f"stratified group {config.inner_folds}-fold CV inside the training clips "
                      "(a group is a "
                      "recording), clip accuracy, ties to the smaller C, C path warm-started; "
                      "while the best C is strictly best at an end of the values tried, one "
                      f"more grid step that way (at most {config.c_extensions}); "
                      "z-score of the outer training clips reused; final fit on all training "
                      "clips warm-started from the CV fit at the chosen C",
            "grid": list(config.c_grid),
            "max_extensions": int(config.c_extensions),
            "inner_folds": int(config.inner_folds),
        },
        "clip_score": "mean of the subclip decision scores; prediction = argmax",
        "evaluation": evaluation,
        "encoder": encoder.description,
    }
