"""AVC pairs (section 2.2): the per-record sampling ops (`sampling`), the training
stream (`stream`: a pure function of seed and position), the fixed evaluation
pairs and their metrics (`evaluation`), the options both take (`options`), and
the tf.data service that runs the stream on input workers (`data_service`,
`local_service`).

`l3.pairs` re-exports `make_dataset` (`pipeline`, which picks the training
stream or the evaluation pairs), `PipelineOptions` and the defaults.
"""

from l3.pairs.options import (AUTOTUNE, DEFAULT_CYCLE_LENGTH, DEFAULT_OPEN_VIDEOS,
                              DEFAULT_PAIRS_PER_VIDEO, DEFAULT_SHUFFLE_PAIRS, EVAL_GROUP,
                              PipelineOptions, pairs_per_video, resolve_files)
from l3.pairs.pipeline import make_dataset
from l3.pairs.stream import StreamPosition, TrainingStream
