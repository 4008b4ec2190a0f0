"""l3: Look, Listen and Learn (Arandjelović & Zisserman, ICCV 2017) in TF2 / Keras 3.

Modules: `constants` (paper numbers), `presets`, `audio` and `image` (front
ends and augmentation), `records` (TFRecord schema), `pairs` (AVC pair
pipeline), `model`, `train`, `export`, `transfer`, `analysis`, `embeddings`
and `hear` (embedding API, HEAR 2021 API); binaries in `l3.bin`.

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


def __getattr__(name):
    if name in _API:
        from l3.embeddings import api
        return getattr(api, name)
    raise AttributeError(f"module 'l3' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
