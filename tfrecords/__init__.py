"""The offline TFRecord builder (`l3-build-tfrecords`), imported as `l3_tfrecords`.

The folder is `tfrecords/`; setup.py maps it to the import name `l3_tfrecords`
so that it cannot clash with the unrelated `tfrecords` package on PyPI.
Modules: `inputs` (what to build from), `workers` (decoding in worker
processes), `shards` (shards, sidecars, summary), `builder` (plan and run a
build), `build` (the flags).
"""
