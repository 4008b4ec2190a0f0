"""AVC pairs (section 2.2): the per-record sampling ops (`sampling`), the pipeline from
shards to batches (`pipeline`), and the tf.data service that runs it on input
workers (`data_service`, `local_service`).

`l3.pairs` re-exports the pipeline (`make_dataset`, `PipelineOptions`, ...).
"""

from l3.pairs.pipeline import (AUTOTUNE, DEFAULT_CYCLE_LENGTH, DEFAULT_OPEN_VIDEOS,
                               DEFAULT_PAIRS_PER_VIDEO, DEFAULT_SHUFFLE_DEALT,
                               DEFAULT_SHUFFLE_PAIRS, EVAL_GROUP, PipelineOptions, make_dataset,
                               pairs_per_video, read_records, resolve_files)
