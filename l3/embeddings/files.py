"""Files to `.npz` embeddings: the engine behind `l3-embed` and `process_*_file`.

Arrays of one output file:

* audio file: `embedding` float32 [T, D], `timestamps` float64 [T] (window
  centres, seconds on the file's clock; `l3.embeddings.timeline`);
* image file: `embedding` float32 [1, D], `timestamps` [0.0];
* video file: `audio_embedding` [T, D_a], `audio_timestamps` [T],
  `image_embedding` [F, D_v], `image_timestamps` [F] (each frame's own
  presentation time, same clock as the audio), and the alignment of the two:
  `image_audio_windows` int64 [F, 2] (audio windows first..stop-1 contain
  the frame) and `image_audio_index` int64 [F] (the containing window whose
  centre is nearest, -1 if none). T = 0 for a video without sound;

plus scalars `kind`, `feature` (audio and image files) or `audio_feature` and
`image_feature` (videos), `hop_size`, `center`, `window_s`, `fps`.

Decoding (PyAV, any container and codec; `l3.media`) runs in `workers`
threads ahead of the encoder; decoded files are grouped until a group holds
`GROUP_BATCHES` x `batch_size` audio windows or images, and each group's
windows and images go through the encoders in batches that cross files. A file that cannot be used
is recorded ({"path", "reason", "error"}) and the rest go on; outputs are
written atomically (`l3.core.fileio`), so a killed run leaves no partial `.npz`.
"""

import concurrent.futures
import dataclasses
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from l3.core import constants as C
from l3.core import errors, fileio, presets
from l3 import media
from l3.embeddings import inputs, runner, timeline

AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif",
                    ".aiff", ".wma", ".au", ".caf"}
VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts",
                    ".flv", ".wmv", ".3gp", ".ogv"}
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
LIST_EXTENSIONS = {".txt", ".lst", ".list"}
KINDS = ("audio", "image", "video")
DEFAULT_HOP_SIZE = 0.1
DEFAULT_FPS = 1.0
# Decoded files are grouped until a group holds this many batches of windows or
# images: at most one partial batch per group, and bounded memory (prepared
# images of a group: 4 x 32 x 224 x 224 x 3 float32 = 77 MB for the paper preset).
GROUP_BATCHES = 4


@dataclasses.dataclass(frozen=True)
class Options:
    """How files are embedded (see the module docstring)."""
    hop_size: float = DEFAULT_HOP_SIZE
    center: bool = True
    fps: float = DEFAULT_FPS
    audio_feature: str = "embedding"
    image_feature: str = "embedding"
    batch_size: int = 32
    max_seconds: Optional[float] = None
    workers: int = 2

    def check(self, rate: int) -> "Options":
        timeline.hop_samples(self.hop_size, rate)
        runner.check_feature(self.audio_feature, "audio_feature")
        runner.check_feature(self.image_feature, "image_feature")
        runner.check_batch_size(self.batch_size)
        if self.center not in (True, False):
            raise ValueError(f"center must be True or False, got {self.center!r}")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps!r}")
        return self

    @property
    def mode(self) -> str:
        return "centered" if self.center else "start"


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


def skip_record(path: str, error: BaseException) -> Dict:
    reason = getattr(error, "reason", None) or type(error).__name__
    return {"path": path, "reason": reason, "error": str(error)}


def collect_inputs(items: Sequence[str]) -> Tuple[List[str], List[Dict]]:
    """Expands files, folders (recursively; media files by extension) and list files.

    A list file (.txt, .lst, .list) holds one path a line (relative to the
    list's folder; blank lines and lines starting with # ignored). Returns
    ([absolute paths, first occurrence order], skip records of missing paths).
    """
    files, missing, seen = [], [], set()

    def add(path):
        path = os.path.abspath(path)
        if path not in seen:
            seen.add(path)
            files.append(path)

    for item in items:
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
                            missing.append(skip_record(path, media.MediaError(
                                "not_found", f"{path} (listed in {item}) does not exist")))
        elif os.path.exists(item):
            add(item)
        else:
            missing.append(skip_record(os.path.abspath(item), media.MediaError(
                "not_found", f"{item} does not exist")))
    return files, missing


def resize_side(model) -> int:
    """The preset's evaluation resize side (256 for 224 crops), or the same ratio if unknown."""
    try:
        return presets.get_preset(model.info["preset"]).resize_side
    except (KeyError, ValueError):
        return int(round(model.image_size * C.RESIZE_SMALLER_SIDE / C.IMAGE_SIZE))


def decode(path: str, kind: str, *, sample_rate: int, fps: float, side: int,
           max_seconds: Optional[float]) -> Dict:
    """Decodes one file (thread-safe, no TensorFlow) into the arrays `_prepare` takes."""
    if kind == "audio":
        audio, start = media.decode_audio(path, sample_rate=sample_rate, max_seconds=max_seconds)
        return {"kind": kind, "audio": audio, "audio_start": start}
    if kind == "image":
        return {"kind": kind, "image": inputs.read_image_file(path, side)}
    video = media.decode_video(path, max_seconds=max_seconds, fps=fps, resize_smaller_side=side,
                               sample_rate=sample_rate, require_audio=False)
    if not video.frames:
        raise media.MediaError("decode_error", f"no decodable frame in {path} (zero-length video?)")
    for w in video.warnings:
        logging.warning("%s: %s", path, w)
    return {"kind": kind, "frames": video.frames, "frame_times": np.asarray(video.frame_times),
            "audio": video.audio, "audio_start": video.audio_start}


def _center_crop(frame: np.ndarray, size: int) -> np.ndarray:
    """uint8 [h, w, 3] -> [size, size, 3]: `l3.ops.image.center_crop`, kept as numpy uint8."""
    from l3.ops import image as image_lib  # TensorFlow: imported with the first video, not with l3
    return np.asarray(image_lib.center_crop(frame, size))


@dataclasses.dataclass
class _Prepared:
    """One decoded file, ready for the encoders."""
    path: str
    out: str
    kind: str
    audio: Optional[np.ndarray] = None  # float32 [N] at the encoder's rate
    starts: Optional[np.ndarray] = None  # int64 [T] window starts
    audio_start: float = 0.0
    images: Optional[np.ndarray] = None  # [F, S, S, 3]: float32 in [0, 1], or uint8 frames
    frame_times: Optional[np.ndarray] = None


def _prepare(model, decoded: Dict, path: str, out: str, opts: Options, side: int) -> _Prepared:
    kind = decoded["kind"]
    item = _Prepared(path, out, kind)
    if kind == "image":
        rgb = inputs.to_unit_rgb(inputs.image_stack(decoded["image"], path), path)[0]
        item.images = inputs.eval_view(rgb, side, model.image_size)[None]
        return item
    audio = np.asarray(decoded["audio"], np.float32)
    if kind == "audio" and len(audio) == 0:
        raise inputs.InputError(path, "empty_audio", "no audio samples decoded")
    if len(audio):
        inputs.check_finite(audio, path, "samples")
        inputs.warn_if_short(len(audio), model.clip_samples, model.sample_rate, path)
        item.audio, item.audio_start = audio, float(decoded["audio_start"])
        item.starts = timeline.window_starts(len(audio), model.clip_samples,
                                             timeline.hop_samples(opts.hop_size, model.sample_rate),
                                             opts.mode)
    if kind == "video":
        # Kept as uint8 crops (4x smaller than float) until their batch is built.
        item.images = np.stack([_center_crop(f, model.image_size) for f in decoded["frames"]])
        item.frame_times = np.asarray(decoded["frame_times"], np.float64)
    return item


def _unit(images: np.ndarray) -> np.ndarray:
    """uint8 or float images -> float32 in [0, 1]."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    return images


def _arrays(model, item: _Prepared, audio_emb, image_emb, opts: Options) -> Dict[str, np.ndarray]:
    """The arrays of one output file (module docstring)."""
    rate, window = model.sample_rate, model.clip_samples
    meta = {"kind": np.array(item.kind), "hop_size": np.float64(opts.hop_size),
            "center": np.bool_(opts.center), "window_s": np.float64(window / rate),
            "fps": np.float64(opts.fps)}
    if item.kind == "image":
        return {"embedding": image_emb, "timestamps": np.zeros(1), "feature": np.array(
            opts.image_feature), **meta}
    starts = item.starts if item.starts is not None else np.zeros(0, np.int64)
    times = timeline.timestamps(starts, window, rate, item.audio_start)
    if item.kind == "audio":
        return {"embedding": audio_emb, "timestamps": times,
                "feature": np.array(opts.audio_feature), **meta}
    if audio_emb is None:
        audio_emb = np.zeros((0, runner.feature_dim(model, "audio", opts.audio_feature)), np.float32)
    ranges, nearest = timeline.frames_in_windows(item.frame_times, starts, window, rate,
                                                 item.audio_start)
    return {"audio_embedding": audio_emb, "audio_timestamps": times,
            "image_embedding": image_emb, "image_timestamps": item.frame_times,
            "image_audio_windows": ranges, "image_audio_index": nearest,
            "audio_feature": np.array(opts.audio_feature),
            "image_feature": np.array(opts.image_feature), **meta}


def save_npz(path: str, arrays: Dict[str, np.ndarray]) -> None:
    with fileio.atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def _finish(model, group: List[_Prepared], opts: Options, outputs: List[str],
            failures: List[Dict]) -> None:
    """Embeds one group (batches across its files) and writes each file's output."""
    if not group:
        return
    window = model.clip_samples
    try:
        audio_jobs = ((i, len(p.starts), lambda a, b, p=p: timeline.slice_windows(
            p.audio, p.starts[a:b], window)) for i, p in enumerate(group) if p.starts is not None)
        audio = dict(runner.apply_batched(
            runner.audio_fn(model, opts.audio_feature, opts.batch_size), audio_jobs,
            opts.batch_size, runner.feature_dim(model, "audio", opts.audio_feature)))
        image_jobs = ((i, len(p.images), lambda a, b, p=p: _unit(p.images[a:b]))
                      for i, p in enumerate(group) if p.images is not None)
        images = dict(runner.apply_batched(
            runner.image_fn(model, opts.image_feature, opts.batch_size), image_jobs,
            opts.batch_size, runner.feature_dim(model, "vision", opts.image_feature)))
    except Exception as e:  # noqa: BLE001 -- the group fails, the run goes on
        for p in group:
            logging.warning("skipping %s: %s", p.path, e)
            failures.append(skip_record(p.path, e))
        return
    for i, p in enumerate(group):
        try:
            save_npz(p.out, _arrays(model, p, audio.get(i), images.get(i), opts))
            outputs.append(p.out)
        except Exception as e:  # noqa: BLE001 -- e.g. an unwritable output folder
            if errors.is_disk_full(e):
                raise  # every later file would fail the same way: one line, stop
            logging.warning("skipping %s: %s", p.path, e)
            failures.append(skip_record(p.path, e))


def run(model, items: Sequence[Tuple[str, str, str]], opts: Options, *,
        progress: bool = False) -> Tuple[List[str], List[Dict]]:
    """Embeds (path, output path, kind) items; returns (outputs written, failure records).

    Two items writing the same output fail with `output_collision` (the first
    one wins); every other failure is one record, and the rest go on.
    """
    model = runner.load_model(model)
    opts = opts.check(model.sample_rate)
    side = resize_side(model)
    outputs, failures, todo, claimed = [], [], [], {}
    for path, out, kind in items:
        if out in claimed:
            failures.append(skip_record(path, inputs.InputError(
                path, "output_collision", f"{out} is also the output of {claimed[out]}")))
        else:
            claimed[out] = path
            todo.append((path, out, kind))

    def work(item):
        path, _, kind = item
        return decode(path, kind, sample_rate=model.sample_rate, fps=opts.fps, side=side,
                      max_seconds=opts.max_seconds)

    bar = None
    if progress:
        bar = tqdm(total=len(todo), desc="embedding", unit="file")
    group, rows = [], [0, 0]
    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, opts.workers)) as pool:
            lookahead = 2 * max(1, opts.workers)
            queue = [(item, pool.submit(work, item)) for item in todo[:lookahead]]
            rest = iter(todo[lookahead:])
            while queue:
                (path, out, kind), future = queue.pop(0)
                nxt = next(rest, None)
                if nxt is not None:
                    queue.append((nxt, pool.submit(work, nxt)))
                try:
                    p = _prepare(model, future.result(), path, out, opts, side)
                    group.append(p)
                    rows[0] += 0 if p.starts is None else len(p.starts)
                    rows[1] += 0 if p.images is None else len(p.images)
                except Exception as e:  # noqa: BLE001 -- skip and report, never stop the run
                    logging.warning("skipping %s: %s", path, e)
                    failures.append(skip_record(path, e))
                if max(rows) >= GROUP_BATCHES * opts.batch_size:
                    _finish(model, group, opts, outputs, failures)
                    group, rows = [], [0, 0]
                if bar is not None:
                    bar.update(1)
            _finish(model, group, opts, outputs, failures)
    finally:
        if bar is not None:
            bar.close()
    return outputs, failures
