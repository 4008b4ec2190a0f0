"""l3: Look, Listen and Learn (Arandjelović & Zisserman, ICCV 2017) in TF2 / Keras 3.

Packages, in the order of the data flow (each imports only those above it;
tests/test_layout.py checks it against docs/DESIGN.md):

  core        paper constants, presets, error kinds, atomic writes, the CLI runner
  media       PyAV decoding (videos, audio) and media writing
  records     the TFRecord schema, framing, shard reading under the damage policy
  ops         image and audio ops (crops, flips, jitter, gain, decimation)
  model       L3-Net and its spectrogram front ends (backend-neutral Keras)
  pairs       AVC pair sampling, the pair pipeline, the tf.data service
  train       training configuration, step, loop, input, distribution, checkpoints
  export      exported encoders: writer, reader, predictors
  embeddings  the openl3-style API, l3-embed, the HEAR API (`l3.hear`)
  eval        AVC accuracy, linear transfer, analyses
  demo        the whole chain on the bundled synthetic corpus
  bin         the console scripts' binaries

The builder, `l3_tfrecords` (folder `tfrecords/`), sits between eval and demo.

The openl3-style embedding API lives at the package top:

    import l3
    emb, ts = l3.get_audio_embedding(audio, sr, "runs/l3/export")
    l3.process_video_file("clip.mp4", "runs/l3/export", output_dir="emb")
"""

__version__ = "0.1.0"

# The API functions are resolved on first use (PEP 562): `import l3` stays
# cheap and imports neither TensorFlow nor PyAV; `l3.embeddings.api` (and,
# on the first encoder call, TensorFlow) loads when one is first touched.
_API = ("get_audio_embedding", "get_image_embedding", "process_audio_file",
        "process_image_file", "process_video_file")


from l3 import _aliases

_aliases.install()  # old import paths (l3.pairs.sampling, l3.eval.transfer, ...) for one release


def __getattr__(name):
    if name in _API:
        from l3.embeddings import api
        return getattr(api, name)
    raise AttributeError(f"module 'l3' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
