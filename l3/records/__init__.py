"""Records: the TFRecord schema (`schema`), its framing and CRCs (`framing`),
and reading shards under the damaged-shard policy (`shard_reader`).

`l3.records` re-exports the schema (feature keys, `make_example`,
`parse_example`, `shard_name`), its public name since the first release.
"""

from l3.records.schema import (AUDIO, AUDIO_START, FEATURES, FRAME_TIMES, FRAMES, LABEL,
                               SAMPLE_RATE, SHARD_SUFFIX, SOURCE, SPLIT, VIDEO_ID, make_example,
                               parse_example, read_examples, shard_name)
