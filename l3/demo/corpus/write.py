"""Writing a corpus: mp4 files, videos.csv and corpus.json, resumable and locked.

`generate_corpus` plans the corpus, renders and encodes the videos that are
not there yet (each written to a hidden partial file, then renamed), then
writes videos.csv and, last, corpus.json: a folder with corpus.json is
finished. An exclusive lock on root/.lock lets a second process wait and
reuse the corpus instead of writing the same files.
"""

import concurrent.futures
import contextlib
import csv
import dataclasses
import io
import json
import multiprocessing
import os
import pathlib
import time
from typing import List, Mapping, Optional, Sequence, Tuple

from tqdm import tqdm

from l3.core import fileio
from l3 import media
from l3.demo.corpus.classes import CLASSES
from l3.demo.corpus.plan import (CORPUS_VERSION, CorpusParams, VideoPlan, default_videos_per_class,
                            plan_corpus, plan_video)
from l3.demo.corpus.objects import OBJECT_SPLITS, OBJECTS_NAME, write_objects
from l3.demo.corpus.render import render_video

try:
    import fcntl
except ImportError:   # Windows: no locking
    fcntl = None

# x264: one thread per file (workers parallelise across files); "veryfast"
# halves encode time against "medium" for ~8 % more bytes; CRF 27 (default
# 23) is web-video quality and a third of the bytes (it smooths most of the
# sensor noise away). No B-frames: with them, this libx264 build's output
# depended on what the process had encoded before (bytes and decoded pixels
# differed between runs), without them it is reproducible byte for byte.
VIDEO_OPTIONS = {"threads": "1", "preset": "veryfast", "crf": "27", "x264-params": "bframes=0"}
JSON_NAME, CSV_NAME = "corpus.json", "videos.csv"
_IN_PROGRESS = ".generating.json"


@dataclasses.dataclass(frozen=True)
class CorpusInfo:
    """A generated corpus: where it is and what is in it (from corpus.json)."""

    root: pathlib.Path
    params: CorpusParams
    classes: Tuple[dict, ...]     # {"name", "index", "visual", "audio"}
    videos: Tuple[dict, ...]      # per-video metadata, see VideoPlan.meta
    seconds: float = 0.0          # wall time of the generate_corpus call
    reused: bool = False

    @property
    def class_names(self) -> List[str]:
        return [c["name"] for c in self.classes]

    @property
    def json_path(self) -> pathlib.Path:
        return self.root / JSON_NAME

    @property
    def csv_path(self) -> pathlib.Path:
        return self.root / CSV_NAME

    @property
    def objects_path(self) -> pathlib.Path:
        """Per frame of each test video, where its object is (l3-boxes format; see `objects`)."""
        return self.root / OBJECTS_NAME

    def split(self, name: str, *, related_only: bool = False) -> List[dict]:
        """Metadata of one split's videos (optionally only those with related sound)."""
        return [v for v in self.videos if v["split"] == name and (v["sound_related"] or not related_only)]

    def paths(self, split: Optional[str] = None) -> List[pathlib.Path]:
        return [self.root / v["path"] for v in self.videos if split in (None, v["split"])]

    def num_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.paths())


def default_corpus_dir() -> pathlib.Path:
    """`$L3_CACHE/corpus-v1`, or `~/.cache/l3/corpus-v1` when L3_CACHE is unset."""
    base = os.environ.get("L3_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "l3")
    return pathlib.Path(base) / f"corpus-v{CORPUS_VERSION}"


def load_corpus(root) -> CorpusInfo:
    """Reads `root/corpus.json` of a finished corpus."""
    root = pathlib.Path(root)
    with open(root / JSON_NAME) as f:
        meta = json.load(f)
    return CorpusInfo(root=root, params=CorpusParams.from_json(meta["params"]),
                      classes=tuple(meta["classes"]), videos=tuple(meta["videos"]))


def _write_json(path: pathlib.Path, obj) -> None:
    # atomic_write + json.dump rather than fileio.write_json: the latter adds a
    # final newline, and corpus.json stays byte-identical to earlier versions.
    with fileio.atomic_write(path, "w") as f:
        json.dump(obj, f, indent=1)


def _write_csv(path: pathlib.Path, plans: Sequence[VideoPlan]) -> None:
    """Kinetics-style videos.csv; bytes (csv's CRLF line ends) independent of the platform."""
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
    for v in plans:
        w.writerow([v.label, v.youtube_id, v.time_start, v.time_start + v.duration, v.split])
    with fileio.atomic_write(path, "wb") as f:
        f.write(text.getvalue().encode("utf-8"))


def _partial_path(final: pathlib.Path) -> pathlib.Path:
    # Hidden (glob("*.mp4") skips it) and still ending in .mp4 (picks the container).
    return final.with_name(f".{final.stem}.partial.mp4")


def write_corpus_video(plan: VideoPlan, path) -> None:
    """Renders one planned video and writes it to `path` atomically (temp + rename).

    Not `fileio.atomic_write`: PyAV opens the file itself, and the partial name
    (`_partial_path`) is one a resumed run knows to delete.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames, audio = render_video(plan)
    tmp = _partial_path(path)
    media.write_video(str(tmp), frames, plan.fps, audio=audio, sample_rate=plan.sample_rate,
                      video_options=VIDEO_OPTIONS)
    os.replace(tmp, path)


def _worker(args) -> str:
    params_json, split, c, i, unrelated, path = args
    plan = plan_video(CorpusParams.from_json(params_json), split, c, i, unrelated)
    write_corpus_video(plan, path)
    return path


def _stale(root: pathlib.Path, params: CorpusParams) -> Optional[dict]:
    """Params of an existing (finished or interrupted) corpus in root, if they differ."""
    for name in (JSON_NAME, _IN_PROGRESS):
        if (root / name).exists():
            with open(root / name) as f:
                old = json.load(f)["params"]
            if old != params.to_json():
                return old
    return None


def _extends(old_params: dict, params: CorpusParams) -> bool:
    """True when `params` only adds splits to a corpus of `old_params` (every other parameter
    and every split the old corpus had the same): its videos are kept, since a video does
    not depend on the other splits (`plan_video`)."""
    new = params.to_json()
    old_counts, new_counts = old_params.get("videos_per_class", {}), new["videos_per_class"]
    return (all(old_params.get(k) == v for k, v in new.items() if k != "videos_per_class")
            and all(old_counts.get(s, 0) in (0, n) for s, n in new_counts.items())
            and set(old_counts) <= set(new_counts))


def _remove_corpus_files(root: pathlib.Path, old_params: dict) -> None:
    """Deletes exactly the files an earlier generation with `old_params` wrote."""
    try:
        old = plan_corpus(CorpusParams.from_json(old_params))
    except (TypeError, ValueError):
        raise FileExistsError(f"{root} holds a corpus of an unknown version; remove it by hand") from None
    for plan in old:
        for p in (root / plan.relpath, _partial_path(root / plan.relpath)):
            if p.exists():
                p.unlink()
    for name in (JSON_NAME, CSV_NAME, OBJECTS_NAME, _IN_PROGRESS):
        if (root / name).exists():
            (root / name).unlink()


def generate_corpus(root=None, *, num_classes: int = 10,
                    videos_per_class: Optional[Mapping[str, int]] = None,
                    seconds: int = 5, fps: int = 8, size: Tuple[int, int] = (120, 160),
                    seed: int = 0, workers: int = 1, progress: bool = True,
                    unrelated_fraction: float = 0.05, duration_jitter: int = 1,
                    overwrite: bool = False) -> CorpusInfo:
    """Generates the corpus under `root` (default `default_corpus_dir()`), or reuses it.

    Args:
      root: output folder; created if needed.
      num_classes: the first `num_classes` of `CLASSES` (1-10).
      videos_per_class: {"train": n, "val": n, "test": n, "scene": n}; default
        32 / 6 / 10 / 10 (the scene split: localization only, see `plan.scene_params`;
        none with one class, which has no other class for a scene's bystander).
      seconds: mean video length in whole seconds; each video is
        seconds +- duration_jitter (uniform integers).
      fps: frame rate of the mp4 files.
      size: (height, width) of the frames.
      seed: everything follows from it; same seed, same videos.
      workers: processes rendering and encoding in parallel (0: all cores).
      progress: show a progress bar (tqdm) and a summary line.
      unrelated_fraction: share of each split's videos whose sound is music or
        speech unrelated to the picture (`sound_related: false` in corpus.json).
      overwrite: if `root` holds a corpus with other parameters, delete its
        files and generate; otherwise that raises FileExistsError. A corpus that
        `videos_per_class` only extends by new splits (e.g. one from before the
        scene split) keeps its videos and gains the new ones.

    Returns: a `CorpusInfo`. If `root/corpus.json` exists with the same
      parameters and every video is there, returns at once (`reused=True`).
      Videos are written atomically, so an interrupted call resumes where it
      stopped.
    """
    start = time.time()
    root = pathlib.Path(root) if root is not None else default_corpus_dir()
    if videos_per_class is None:
        videos_per_class = default_videos_per_class(num_classes)
    params = CorpusParams(num_classes=num_classes, videos_per_class=dict(videos_per_class),
                          seconds=seconds, duration_jitter=duration_jitter, fps=fps,
                          size=tuple(size), seed=seed, unrelated_fraction=unrelated_fraction)
    root.mkdir(parents=True, exist_ok=True)
    plans = plan_corpus(params)
    info = _reuse(root, params, plans)   # no lock: corpus.json is written last
    if info is None:
        with _locked(root):   # a second process (pytest-xdist, two demos) waits, then reuses
            info = _reuse(root, params, plans) or _generate(root, params, plans, workers, progress,
                                                            overwrite)
    if not (root / OBJECTS_NAME).exists():   # a corpus from before objects.json existed
        with _locked(root):
            if not (root / OBJECTS_NAME).exists():
                _write_objects(root, plans)
    info = dataclasses.replace(info, seconds=time.time() - start)
    if progress:
        print(f"corpus: {len(plans)} videos in {root} ({'reused' if info.reused else 'generated'}"
              f", {info.num_bytes() / 1e6:.1f} MB, {info.seconds:.1f} s)")
    return info


def _reuse(root: pathlib.Path, params: CorpusParams, plans) -> Optional[CorpusInfo]:
    if not (root / JSON_NAME).exists() or _stale(root, params) is not None:
        return None
    if not all((root / p.relpath).exists() for p in plans):
        return None
    return dataclasses.replace(load_corpus(root), reused=True)


@contextlib.contextmanager
def _locked(root: pathlib.Path):
    """An exclusive lock on root/.lock (POSIX; no locking elsewhere)."""
    if fcntl is None:
        yield
        return
    with open(root / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _generate(root, params, plans, workers, progress, overwrite) -> CorpusInfo:
    old = _stale(root, params)
    if old is not None and not _extends(old, params):
        if not overwrite:
            raise FileExistsError(f"{root} holds a corpus with other parameters {old}; "
                                  "pass overwrite=True or choose another folder")
        _remove_corpus_files(root, old)
    _write_json(root / _IN_PROGRESS, {"params": params.to_json()})
    for p in root.glob("*/*/.*.partial.mp4"):   # left by a killed run
        p.unlink()
    todo = [(params.to_json(), p.split, p.label_index, p.index, not p.sound_related, str(root / p.relpath))
            for p in plans if not (root / p.relpath).exists()]
    _run(todo, workers, progress)
    classes = [{"name": c.name, "index": i, "visual": c.visual, "audio": c.audio}
               for i, c in enumerate(CLASSES[:params.num_classes])]
    _write_csv(root / CSV_NAME, plans)
    _write_objects(root, plans)
    _write_json(root / JSON_NAME, {"generator": f"l3.demo.corpus v{CORPUS_VERSION}", "params": params.to_json(),
                                   "classes": classes, "videos": [p.meta() for p in plans]})
    (root / _IN_PROGRESS).unlink()
    return load_corpus(root)


def _write_objects(root: pathlib.Path, plans: Sequence[VideoPlan]) -> None:
    """root/objects.json: where the object is in every frame of the OBJECT_SPLITS videos."""
    write_objects(root / OBJECTS_NAME, [p for p in plans if p.split in OBJECT_SPLITS])


def _run(todo, workers: int, progress: bool) -> None:
    workers = workers or os.cpu_count() or 1
    bar = None
    if progress and todo:
        bar = tqdm(total=len(todo), desc="corpus", unit="video")
    if workers == 1 or len(todo) <= 1:
        for task in todo:
            _worker(task)
            if bar is not None:
                bar.update()
    else:
        # spawn, not fork: callers (l3-demo) may already hold TensorFlow's threads.
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx) as pool:
            for _ in pool.map(_worker, todo, chunksize=4):
                if bar is not None:
                    bar.update()
    if bar is not None:
        bar.close()
