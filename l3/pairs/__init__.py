"""AVC pairs (section 2.2): the per-record sampling ops (`sampling`), the training
stream (`stream`: a pure function of seed and position), the fixed evaluation
pairs and their metrics (`evaluation`), the options both take (`options`), and
the tf.data service that runs the stream on input workers (`data_service`,
`local_service`).

`l3.pairs` re-exports `make_dataset` (`pipeline`, which picks the training
stream or the evaluation pairs), `PipelineOptions` and the defaults. They are
loaded on first use (PEP 562), so that `l3.pairs.local_service`, which the
launcher imports, stays free of TensorFlow (~7 CPU-seconds a process here).
"""

import importlib

_EXPORTS = {
    "options": ("AUTOTUNE", "DEFAULT_CYCLE_LENGTH", "DEFAULT_OPEN_VIDEOS",
                "DEFAULT_PAIRS_PER_VIDEO", "DEFAULT_SHUFFLE_PAIRS", "EVAL_GROUP",
                "PipelineOptions", "pairs_per_video", "resolve_files"),
    "pipeline": ("make_dataset",),
    "stream": ("StreamPosition", "TrainingStream"),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    """A re-exported name from its module, or a submodule, imported on first use."""
    if name in _HOME:
        value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__():
    return sorted(set(globals()) | set(_HOME))
