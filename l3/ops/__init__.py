"""Per-example ops shared by the pipeline, the training step and the tools:
`image` (resize, crops, flip, colour jitter, eager and in tf.data) and
`audio` (gain, decimation)."""
