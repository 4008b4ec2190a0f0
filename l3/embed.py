"""Audio, image and video files to L3 embeddings (`l3-embed`).

One `.npz` per input file, at `output_dir/<path relative to the inputs'
common folder>.npz` (the extension is kept: `dog.wav` -> `dog.wav.npz`, so
`dog.wav` and `dog.mp4` do not collide). Arrays:

* audio file: `embedding` float32 [n, D] and `timestamps` float64 [n];
* image file: `embedding` float32 [1, D] and `timestamps` [0.0];
* video file: `audio_embedding` [n_a, D], `audio_timestamps` [n_a],
  `image_embedding` [n_f, D], `image_timestamps` [n_f] (n_a = 0 for a
  video without sound);

plus `kind`, `feature`, `hop_s` and `window_s` scalars. D is 512 for the
paper preset's `embedding` (`feature="conv4_2_pooled"`: the 6144-D / 8192-D
transfer features instead).

Audio windows: 1 s (the encoder's input) every `hop_s` seconds
(default 0.1 s, the usual choice of L3 embedding tools; the paper does not
embed whole files), starting at the first sample; windows that would run
past the end are not taken, except that a file shorter than one window gives
one zero-padded window. Audio is mixed to mono and resampled to the
encoder's rate (`l3.media.decode_audio`: any container, codec, rate and
channel layout).

**Timestamps are window centres**, in seconds on the file's clock (the
container start is 0, as `l3.media` defines it): window k covers
[t_k - 0.5 s, t_k + 0.5 s). Video frames (sampled at `fps`, default 1) are
stamped with their own presentation times on the same clock, so audio and
image timestamps of one video are directly comparable. Frames and images are
prepared as at evaluation time: smaller side to the preset's resize side,
central crop (`l3.image.eval_image`).

Robustness: a file that cannot be read is skipped and reported (never stops
the run) in `output_dir/skipped.json`, a list of {"path", "reason",
"error"}; an existing output is kept unless `overwrite` (so a rerun
resumes); outputs are written to a temporary name and renamed, so a killed
run leaves no half-written `.npz`.
"""

import concurrent.futures
import json
import logging
import os
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from l3 import media

AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif",
                    ".aiff", ".wma", ".au", ".caf"}
VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts",
                    ".flv", ".wmv", ".3gp", ".ogv"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
LIST_EXTENSIONS = {".txt", ".lst", ".list"}
KINDS = ("audio", "image", "video")
DEFAULT_HOP_S = 0.1
DEFAULT_FPS = 1.0
SKIPPED_JSON = "skipped.json"


def kind_of(path: str) -> Optional[str]:
    """"audio", "image" or "video" by extension; None for other files."""
    ext = os.path.splitext(path)[1].lower()
    if ext in AUDIO_EXTENSIONS:
        return "audio"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if ext in IMAGE_EXTENSIONS:
        return "image"
    return None


def collect_inputs(inputs: Sequence[str]) -> Tuple[List[Tuple[str, str]], List[Dict]]:
    """Expands files, folders (recursively; media files by extension) and list files.

    A list file (.txt, .lst, .list) holds one path a line (relative to the
    list's folder; blank lines and lines starting with # ignored). Returns
    ([(absolute path, output name relative to output_dir)], missing) where
    `missing` lists skip records for paths that do not exist. Output names
    are paths relative to the common folder of all inputs, plus ".npz".
    """
    files, missing, seen = [], [], set()

    def add(path):
        path = os.path.abspath(path)
        if path not in seen:
            seen.add(path)
            files.append(path)

    for item in inputs:
        if os.path.isdir(item):
            for root, dirs, names in os.walk(item):
                dirs.sort()
                for name in sorted(names):
                    if kind_of(name) and not name.startswith("."):
                        add(os.path.join(root, name))
        elif os.path.splitext(item)[1].lower() in LIST_EXTENSIONS and os.path.isfile(item):
            base = os.path.dirname(os.path.abspath(item))
            with open(item) as f:
                for line in f:
                    line = line.strip()
                    if line and not line.startswith("#"):
                        path = os.path.join(base, os.path.expanduser(line))
                        if os.path.exists(path):
                            add(path)
                        else:
                            missing.append(_skip_record(path, media.MediaError(
                                "not_found", f"{path} (listed in {item}) does not exist")))
        elif os.path.exists(item):
            add(item)
        else:
            missing.append(_skip_record(os.path.abspath(item), media.MediaError(
                "not_found", f"{item} does not exist")))
    if not files:
        return [], missing
    common = os.path.commonpath([os.path.dirname(p) for p in files])
    return [(p, os.path.relpath(p, common) + ".npz") for p in files], missing


def _skip_record(path: str, error: BaseException) -> Dict:
    reason = getattr(error, "reason", None) or type(error).__name__
    return {"path": path, "reason": reason, "error": str(error)}


# ----------------------------------------------------------------------------
# Arrays to embeddings.


def audio_windows(num_samples: int, window: int, hop: int) -> np.ndarray:
    """Window start samples: 0, hop, ... while the window fits; [0] if the audio is shorter."""
    if num_samples <= window:
        return np.zeros(1, np.int64)
    return np.arange(0, num_samples - window + 1, hop, dtype=np.int64)


def embed_audio_array(model, audio: np.ndarray, *, hop_s: float = DEFAULT_HOP_S,
                      start_s: float = 0.0, feature: str = "embedding",
                      batch_size: int = 64) -> Tuple[np.ndarray, np.ndarray]:
    """Mono float audio at `model.sample_rate` -> (float32 [n, D], centre timestamps float64 [n]).

    Windows are built one batch at a time, so long files do not need n x 1 s
    of memory. `start_s` is the time of audio[0] (added to the timestamps).
    """
    rate, window = model.sample_rate, model.clip_samples
    hop = max(1, int(round(hop_s * rate)))
    x = np.asarray(audio, np.float32).reshape(-1)
    if len(x) < window:
        x = np.pad(x, (0, window - len(x)))
    starts = audio_windows(len(x), window, hop)
    out = []
    for i in range(0, len(starts), batch_size):
        batch = np.stack([x[s:s + window] for s in starts[i:i + batch_size]])
        out.append(model.embed_audio(batch, batch_size=batch_size)[feature])
    times = start_s + (starts + window / 2.0) / rate
    return np.concatenate(out).astype(np.float32), times.astype(np.float64)


def _resize_side(model) -> int:
    """The preset's evaluation resize side (256 for 224 crops), or the same ratio if unknown."""
    from l3 import constants as C, presets
    try:
        return presets.get_preset(model.info["preset"]).resize_side
    except (KeyError, ValueError):
        return int(round(model.image_size * C.RESIZE_SMALLER_SIDE / C.IMAGE_SIZE))


def prepare_image(image: np.ndarray, resize_side: int, image_size: int) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [image_size, image_size, 3] in [0, 1] (eval view)."""
    from l3 import image as image_lib
    return np.asarray(image_lib.eval_image(image, resize_side=resize_side, image_size=image_size))


def _center_crop(frame: np.ndarray, size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return frame[top:top + size, left:left + size]


def embed_frames(model, frames: Sequence[np.ndarray], *, feature: str = "embedding",
                 batch_size: int = 64) -> np.ndarray:
    """uint8 frames whose smaller side is the preset's resize side -> float32 [n, D]."""
    size = model.image_size
    out = []
    for i in range(0, len(frames), batch_size):
        batch = np.stack([_center_crop(f, size) for f in frames[i:i + batch_size]])
        images = batch.astype(np.float32) / 255.0
        out.append(model.embed_images(images, batch_size=batch_size)[feature])
    if not out:
        return np.zeros((0, _feature_dim(model, "vision", feature)), np.float32)
    return np.concatenate(out).astype(np.float32)


def _feature_dim(model, modality: str, feature: str) -> int:
    info = model.info
    if feature == "embedding":
        return int(info["embedding_dim"])
    return int(info["audio_transfer_dim" if modality == "audio" else "vision_transfer_dim"])


def _read_image(path: str) -> np.ndarray:
    from PIL import Image, ImageOps
    if not os.path.exists(path):
        raise media.MediaError("not_found", f"{path} does not exist")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as e:  # PIL's UnidentifiedImageError is an OSError
        raise media.MediaError("unreadable", f"cannot read image {path}: {e}") from None


def decode(path: str, kind: str, *, sample_rate: int, fps: float, resize_side: int,
           max_seconds: Optional[float]) -> Dict:
    """Decodes one file (thread-safe, no TensorFlow): the arrays `embed_decoded` needs."""
    if kind == "audio":
        audio, start = media.decode_audio(path, sample_rate=sample_rate, max_seconds=max_seconds)
        return {"kind": kind, "audio": audio, "audio_start": start}
    if kind == "image":
        return {"kind": kind, "image": _read_image(path)}
    video = media.decode_video(path, max_seconds=max_seconds, fps=fps,
                               resize_smaller_side=resize_side, sample_rate=sample_rate,
                               require_audio=False)
    if not video.frames:
        raise media.MediaError("decode_error", f"no decodable frame in {path}")
    for w in video.warnings:
        logging.warning("%s: %s", path, w)
    return {"kind": kind, "frames": video.frames, "frame_times": np.asarray(video.frame_times),
            "audio": video.audio, "audio_start": video.audio_start}


def embed_decoded(model, decoded: Dict, *, hop_s: float, feature: str,
                  batch_size: int) -> Dict[str, np.ndarray]:
    """The arrays of one output file (see the module docstring)."""
    kind = decoded["kind"]
    meta = {"kind": np.array(kind), "feature": np.array(feature), "hop_s": np.float64(hop_s),
            "window_s": np.float64(model.clip_samples / model.sample_rate)}
    if kind == "audio":
        emb, times = embed_audio_array(model, decoded["audio"], hop_s=hop_s,
                                       start_s=decoded["audio_start"], feature=feature,
                                       batch_size=batch_size)
        return {"embedding": emb, "timestamps": times, **meta}
    if kind == "image":
        image = prepare_image(decoded["image"], _resize_side(model), model.image_size)
        emb = model.embed_images(image[None], batch_size=1)[feature].astype(np.float32)
        return {"embedding": emb, "timestamps": np.zeros(1), **meta}
    image_emb = embed_frames(model, decoded["frames"], feature=feature, batch_size=batch_size)
    if len(decoded["audio"]):
        audio_emb, audio_times = embed_audio_array(model, decoded["audio"], hop_s=hop_s,
                                                   start_s=decoded["audio_start"], feature=feature,
                                                   batch_size=batch_size)
    else:
        audio_emb = np.zeros((0, _feature_dim(model, "audio", feature)), np.float32)
        audio_times = np.zeros(0)
    return {"audio_embedding": audio_emb, "audio_timestamps": audio_times,
            "image_embedding": image_emb,
            "image_timestamps": decoded["frame_times"].astype(np.float64),
            **meta}


def _save_npz(path: str, arrays: Dict[str, np.ndarray]) -> None:
    """np.savez to a temporary file beside `path`, then rename (atomic on one filesystem)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_json(path: str, obj) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".skipped.", suffix=".tmp", dir=os.path.dirname(path))
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------
# The tool.


def embed_files(model, inputs: Sequence[str], output_dir: str, *, hop_s: float = DEFAULT_HOP_S,
                fps: float = DEFAULT_FPS, feature: str = "embedding", batch_size: int = 64,
                overwrite: bool = False, workers: int = 2, max_seconds: Optional[float] = None,
                kind: Optional[str] = None, progress: bool = True) -> Dict:
    """Embeds every file of `inputs` (files, folders, list files) into `output_dir`.

    Args:
      model: an `l3.export.ExportedModel` or an export directory path.
      hop_s: audio window hop in seconds (windows are 1 s).
      fps: video frames embedded per second.
      feature: "embedding" (D-dim) or "conv4_2_pooled" (the transfer features).
      overwrite: recompute outputs that exist (default: keep them, i.e. resume).
      workers: decoding threads running ahead of the encoder.
      max_seconds: decode only the first seconds of each file (None: all).
      kind: force "audio", "image" or "video" (default: by extension; other
        files given explicitly are tried as audio).
    Returns:
      {"embedded", "existing", "skipped" (counts), "outputs" [paths written],
      "skipped_files" [records], "seconds"}. `output_dir/skipped.json` holds
      the skip records (an empty list when none).
    """
    from l3 import export as export_lib
    if isinstance(model, (str, os.PathLike)):
        model = export_lib.ExportedModel(os.fspath(model))
    if feature not in ("embedding", "conv4_2_pooled"):
        raise ValueError(f"feature must be 'embedding' or 'conv4_2_pooled', got {feature!r}")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    start = time.perf_counter()
    os.makedirs(output_dir, exist_ok=True)
    files, skipped = collect_inputs(inputs)
    todo = []
    existing = 0
    for path, name in files:
        out = os.path.join(output_dir, name)
        if os.path.exists(out) and not overwrite:
            existing += 1
        else:
            todo.append((path, out, kind or kind_of(path) or "audio"))
    resize_side = _resize_side(model)

    def work(item):
        path, _, k = item
        return decode(path, k, sample_rate=model.sample_rate, fps=fps, resize_side=resize_side,
                      max_seconds=max_seconds)

    outputs = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), desc="embedding", unit="file")
    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
            window = 2 * max(1, workers)
            pending = iter(todo)
            queue = []
            for item in pending:  # keep `window` decodes in flight, in order
                queue.append((item, pool.submit(work, item)))
                if len(queue) >= window:
                    break
            while queue:
                (path, out, k), future = queue.pop(0)
                for item in pending:
                    queue.append((item, pool.submit(work, item)))
                    break
                try:
                    arrays = embed_decoded(model, future.result(), hop_s=hop_s, feature=feature,
                                           batch_size=batch_size)
                    _save_npz(out, arrays)
                    outputs.append(out)
                except Exception as e:  # noqa: BLE001 -- skip and report, never stop the run
                    logging.warning("skipping %s: %s", path, e)
                    skipped.append(_skip_record(path, e))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        _write_json(os.path.join(output_dir, SKIPPED_JSON), skipped)
    return {"embedded": len(outputs), "existing": existing, "skipped": len(skipped),
            "outputs": outputs, "skipped_files": skipped,
            "seconds": round(time.perf_counter() - start, 3)}
