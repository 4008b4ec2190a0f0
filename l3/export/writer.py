"""SavedModel encoders: the public contract of docs/DESIGN.md.

`export_model(avc_model, preset, output_dir)` writes:

  output_dir/audio_encoder/   serving_default(waveform float32 [b, N])
                                -> embedding [b, D], conv4_2_pooled [b, P_audio]
  output_dir/vision_encoder/  serving_default(image float32 [b, S, S, 3] in [0, 1])
                                -> embedding [b, D], conv4_2_pooled [b, P_vision]
  output_dir/avc/             serving_default(image, waveform) -> correspondence [b]
  output_dir/audio_encoder.keras, vision_encoder.keras, avc.keras  (for fine-tuning)
  output_dir/{audio_encoder,vision_encoder,avc}.onnx    (formats: "onnx")
  output_dir/{audio_encoder,vision_encoder,avc}.tflite  (formats: "litert")
  output_dir/export.json      preset, front end, sizes, training step, source
                              checkpoint, and every artifact file with its sha256

`formats` picks the artifacts: "savedmodel" and "keras" (the default, both),
"onnx", "litert". The ONNX and LiteRT files are written by Keras's own
`model.export(format=...)` (TensorFlow backend: tf2onnx and the TFLite
converter), with the SavedModels' input and output names. Their front end
computes the DFT as a matrix product (`l3.model.frontend`, dft="matmul": neither
converter takes TF's complex FFT outputs); ONNX keeps it in float64, LiteRT
computes it in float32 (its builtin ops have no float64; a Select-TF-ops
model would not run in the plain LiteRT interpreter). WORKSPACE_NOTES.md
gives the agreement of each with the SavedModels.

Paper preset: N = 48000 (1 s at 48 kHz), S = 224, D = 512, P_audio = 6144,
P_vision = 8192. SavedModels load with plain `tf.saved_model.load` in a
process that never imports l3 (the spectrogram is traced into the graph).

Reading an export back is `l3.export.reader` (`ExportedModel`,
`read_export_info`); P(corresponds) from a model, checkpoint or export is
`l3.export.predictors`. Those reader names are also importable from this
module (the old path, for one release).
"""

import os
from typing import Dict, Optional, Sequence

import keras
import tensorflow as tf

from l3.core import errors, fileio, temps
from l3.export.reader import (AUDIO_ENCODER, AVC, EXPORT_JSON, VISION_ENCODER,  # noqa: F401
                              ExportedModel, read_export_info)
from l3.model import network as model_lib
from l3.core.presets import Preset
from l3.train import run_dir

FORMATS = ("savedmodel", "keras", "onnx", "litert")
DEFAULT_FORMATS = ("savedmodel", "keras")
# The front end's precision in each format (see the module docstring).
FRONTEND_PRECISION = {"savedmodel": "float64", "keras": "float64", "onnx": "float64",
                      "litert": "float32"}
_SUFFIX = {"onnx": ".onnx", "litert": ".tflite"}


def _archive(model: keras.Model, fn, signature, path: str) -> None:
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", fn, input_signature=signature)
    archive.write_out(path, verbose=False)


def check_formats(formats: Sequence[str]) -> tuple:
    """Validates a list of export formats; returns it as a tuple without duplicates."""
    formats = tuple(dict.fromkeys(f.strip() for f in formats if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"--formats: unknown or empty {unknown or formats}; choose from {list(FORMATS)}")
    return formats


def portable_models(avc_model: keras.Model, preset: Preset, *, precision: str) -> Dict[str, keras.Model]:
    """The three contract models for a converter: {name: keras.Model}, weights shared or copied.

    audio_encoder: waveform -> {embedding, conv4_2_pooled}, with a
    dft="matmul" front end in `precision`; vision_encoder: image -> the same
    keys; avc: [image, waveform] -> {correspondence [b]}.
    """
    nets = model_lib.subnetworks(avc_model)
    audio = model_lib.build_audio_network(preset, frontend_precision=precision, frontend_dft="matmul")
    audio.set_weights(nets[model_lib.AUDIO].get_weights())  # the front end has no weights
    audio_enc = model_lib.build_encoder(audio, preset, model_lib.AUDIO)
    vision_enc = model_lib.build_encoder(nets[model_lib.VISION], preset, model_lib.VISION)
    image = keras.Input((preset.image_size, preset.image_size, 3), name="image")
    waveform = keras.Input((preset.clip_samples,), name="waveform")
    logits = nets["fusion"]([vision_enc(image)["embedding"], audio_enc(waveform)["embedding"]])
    probability = model_lib.correspondence_probability(logits)
    avc = keras.Model([image, waveform], {"correspondence": probability}, name="avc_export")
    return {AUDIO_ENCODER: audio_enc, VISION_ENCODER: vision_enc, AVC: avc}


def _convert(models: Dict[str, keras.Model], preset: Preset, fmt: str, folder: str) -> None:
    """Writes `folder/<name>.onnx` or `.tflite` with Keras's own `model.export`."""
    image_spec = tf.TensorSpec([None, preset.image_size, preset.image_size, 3], tf.float32, name="image")
    waveform_spec = tf.TensorSpec([None, preset.clip_samples], tf.float32, name="waveform")
    signatures = {AUDIO_ENCODER: [waveform_spec], VISION_ENCODER: [image_spec],
                  AVC: [[image_spec, waveform_spec]]}
    for name, net in models.items():
        path = os.path.join(folder, name + _SUFFIX[fmt])
        if fmt == "onnx":
            net.export(path, format="onnx", input_signature=signatures[name], verbose=False)
        else:  # builtin ops only: a Select-TF-ops model would not run in the LiteRT interpreter
            net.export(path, format="litert", input_signature=signatures[name], verbose=False,
                       target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]})


def _artifacts(folder: str, formats: Sequence[str]) -> list:
    """[{path, format, bytes, sha256}] of every file each format wrote (SavedModels: each file)."""
    names = {"savedmodel": [AUDIO_ENCODER, VISION_ENCODER, AVC],
             "keras": [n + ".keras" for n in (AUDIO_ENCODER, VISION_ENCODER, AVC)],
             **{f: [n + _SUFFIX[f] for n in (AUDIO_ENCODER, VISION_ENCODER, AVC)] for f in _SUFFIX}}
    rows = []
    for fmt in formats:
        for name in names[fmt]:
            top = os.path.join(folder, name)
            files = ([os.path.join(d, f) for d, _, fs in os.walk(top) for f in fs]
                     if os.path.isdir(top) else [top])
            for path in sorted(files):
                rows.append({"path": os.path.relpath(path, folder), "format": fmt,
                             "bytes": os.path.getsize(path), "sha256": fileio.file_sha256(path)})
    return rows


def export_model(avc_model: keras.Model, preset: Preset, output_dir: str, *,
                 step: Optional[int] = None, source: str = "",
                 formats: Sequence[str] = DEFAULT_FORMATS) -> Dict:
    """Writes the export directory of the contract for `avc_model`; returns export.json's dict.

    `formats`: any of FORMATS (see the module docstring). The directory is
    assembled under a temporary name beside `output_dir` and renamed into
    place, so a reader never sees half an export. An existing `output_dir`
    is replaced. Needs the TensorFlow backend.
    """
    formats = check_formats(formats)
    nets = model_lib.subnetworks(avc_model)
    audio_enc = model_lib.build_encoder(nets[model_lib.AUDIO], preset, model_lib.AUDIO)
    vision_enc = model_lib.build_encoder(nets[model_lib.VISION], preset, model_lib.VISION)
    waveform_spec = tf.TensorSpec([None, preset.clip_samples], tf.float32, name="waveform")
    image_spec = tf.TensorSpec([None, preset.image_size, preset.image_size, 3], tf.float32,
                               name="image")

    def audio_fn(waveform):
        out = audio_enc(waveform, training=False)
        return {"embedding": out["embedding"], "conv4_2_pooled": out["conv4_2_pooled"]}

    def vision_fn(image):
        out = vision_enc(image, training=False)
        return {"embedding": out["embedding"], "conv4_2_pooled": out["conv4_2_pooled"]}

    def avc_fn(image, waveform):
        return {"correspondence": model_lib.correspondence(avc_model, image, waveform)}

    output_dir = os.path.abspath(output_dir)
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    try:  # a tagged, registered name: a signal removes it, a later run sweeps a killed one's
        tmp = temps.new_dir(output_dir)
    except OSError as e:
        raise (errors.write_error(output_dir, e) if errors.is_write_failure(e) else e) from None
    try:
        if "savedmodel" in formats:
            _archive(audio_enc, audio_fn, [waveform_spec], os.path.join(tmp, AUDIO_ENCODER))
            _archive(vision_enc, vision_fn, [image_spec], os.path.join(tmp, VISION_ENCODER))
            _archive(avc_model, avc_fn, [image_spec, waveform_spec], os.path.join(tmp, AVC))
        if "keras" in formats:
            audio_enc.save(os.path.join(tmp, AUDIO_ENCODER + ".keras"))
            vision_enc.save(os.path.join(tmp, VISION_ENCODER + ".keras"))
            avc_model.save(os.path.join(tmp, AVC + ".keras"))
        for fmt in ("onnx", "litert"):
            if fmt in formats:
                _convert(portable_models(avc_model, preset, precision=FRONTEND_PRECISION[fmt]),
                         preset, fmt, tmp)
        info = {
            **preset.sizes(),
            "step": None if step is None else int(step),
            "source_checkpoint": source,
            "signatures": {
                AUDIO_ENCODER: {"inputs": {"waveform": [None, preset.clip_samples]},
                                "outputs": {"embedding": [None, preset.embedding_dim],
                                            "conv4_2_pooled": [None, preset.audio_transfer_dim]}},
                VISION_ENCODER: {"inputs": {"image": [None, preset.image_size, preset.image_size, 3]},
                                 "outputs": {"embedding": [None, preset.embedding_dim],
                                             "conv4_2_pooled": [None, preset.vision_transfer_dim]}},
                AVC: {"inputs": {"image": [None, preset.image_size, preset.image_size, 3],
                                 "waveform": [None, preset.clip_samples]},
                      "outputs": {"correspondence": [None]}},
            },
            "formats": list(formats),
            "frontend_precision": {f: FRONTEND_PRECISION[f] for f in formats},
            "artifacts": _artifacts(tmp, formats),
        }
        fileio.write_json(os.path.join(tmp, EXPORT_JSON), info)
        _swap_into_place(tmp, output_dir)
    except BaseException as e:
        temps.discard(tmp)
        if errors.is_write_failure(e) and not isinstance(e, errors.WriteError):
            raise errors.write_error(output_dir, e) from None
        raise
    return info


def _swap_into_place(tmp: str, output_dir: str) -> None:
    """Renames the finished folder `tmp` to `output_dir`, replacing an existing export.

    The two renames happen with SIGTERM/SIGINT held back, so a signal never
    leaves the old export moved aside and the new one not yet in place.
    """
    with temps.deferred_signals():
        if os.path.exists(output_dir):
            old = temps.new_name(output_dir, "dir")
            os.rename(output_dir, old)
            try:
                os.rename(tmp, output_dir)
            except BaseException:
                os.rename(old, output_dir)  # the previous export stays
                temps.forget(old)
                raise
            temps.forget(tmp)
            temps.discard(old)
        else:
            os.rename(tmp, output_dir)
            temps.forget(tmp)


def export_checkpoint(model_dir: str, output_dir: str, *, preset: Optional[Preset] = None,
                      checkpoint: Optional[str] = None,
                      formats: Sequence[str] = DEFAULT_FORMATS) -> Dict:
    """Restores the model of a training run and exports it in `formats`.

    Args:
      model_dir: an `l3-train --model_dir`; its latest checkpoint is used
        unless `checkpoint` names one. The preset (with its front end) is
        read from the run's `train_config.json` unless given.
    """
    restored = run_dir.restore_model(model_dir, preset=preset, checkpoint=checkpoint)
    return export_model(restored.model, restored.preset, output_dir, step=restored.step,
                        source=restored.checkpoint, formats=formats)
