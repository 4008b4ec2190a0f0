"""What to build from: a folder of videos, a list file, or a Kinetics-style CSV.

Each input becomes a list of `VideoItem`s sorted by (split, video_id). That
order is the same on every machine given the same input, which is what lets
independent cluster jobs (`--shard_index`) build disjoint shards that together
equal a single-machine build. No TensorFlow here (worker processes import it).
"""

import csv
import dataclasses
import glob
import logging
import os
import re
from typing import Iterable, List, Optional, Sequence

from l3.core import errors

# Containers FFmpeg reads that are used for videos. Files with these extensions
# are all enumerated (even empty or fake ones, which the builder then skips
# with a reason), so that nothing in the folder is silently ignored.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ogg", ".ogv", ".mpeg",
                    ".mpg", ".ts", ".mts", ".m2ts", ".flv", ".3gp", ".wmv", ".asf", ".vob")

# The layout of the usual Kinetics downloaders: <split>/<label>/<id>_<start>_<end>.mp4.
# Fields: split, label, label_ (spaces as underscores), youtube_id, time_start,
# time_end (ints). Glob characters are allowed (the first sorted match is used),
# e.g. "{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.*".
DEFAULT_KINETICS_PATTERN = "{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"

_SPLIT_RE = re.compile(r"^[A-Za-z0-9_]+$")
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class VideoItem:
    """One video to decode.

    path: where to read it. video_id: unique, stable across machines (the sort
    key and the record's id). label, split: "" when unknown.
    """

    path: str
    video_id: str
    label: str = ""
    split: str = ""


def detect_kind(input_path: str) -> str:
    """"folder", "csv" (a Kinetics-style CSV) or "list" (one path per line)."""
    if os.path.isdir(input_path):
        return "folder"
    if not os.path.isfile(input_path):
        raise errors.MissingInputError(f"--input={input_path} does not exist")
    if input_path.lower().endswith(".csv"):
        return "csv"
    with open(input_path, newline="", encoding="utf-8", errors="replace") as f:
        first = f.readline()
    return "csv" if "youtube_id" in first else "list"


def check_split(split: str) -> str:
    if not _SPLIT_RE.match(split):
        raise errors.UsageError(f"split {split!r} must match {_SPLIT_RE.pattern} (it names shard files)")
    return split


def list_folder(root: str, *, split: str, label_from_parent_dir: bool = False) -> List[VideoItem]:
    """Every file under `root` (recursive) with a video extension.

    video_id is the path relative to `root` (POSIX separators); the label, if
    asked, is the name of the file's parent folder.
    """
    check_split(split)
    items = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(VIDEO_EXTENSIONS):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            label = os.path.basename(dirpath) if label_from_parent_dir else ""
            items.append(VideoItem(path=path, video_id=rel, label=label, split=split))
    return items


def read_list_file(list_path: str, *, split: str, label_from_parent_dir: bool = False,
                   video_root: Optional[str] = None) -> List[VideoItem]:
    """One path per line ('#' comments and blank lines skipped).

    Relative paths are resolved against `video_root`, else the list file's
    folder. video_id is the line as written.
    """
    check_split(split)
    base = video_root or os.path.dirname(os.path.abspath(list_path))
    items = []
    with open(list_path, encoding="utf-8") as f:
        for line in f:
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            path = entry if os.path.isabs(entry) else os.path.join(base, entry)
            label = os.path.basename(os.path.dirname(path)) if label_from_parent_dir else ""
            items.append(VideoItem(path=path, video_id=entry, label=label, split=split))
    return items


def kinetics_path(row: dict, video_root: str, pattern: str = DEFAULT_KINETICS_PATTERN) -> str:
    """Where a CSV row's clip lives on disk (first glob match, if the pattern has wildcards)."""
    fields = dict(split=row["split"], label=row["label"], label_=row["label"].replace(" ", "_"),
                  youtube_id=row["youtube_id"], time_start=row["time_start"],
                  time_end=row["time_end"])
    path = os.path.join(video_root, pattern.format(**fields))
    if glob.has_magic(path):
        matches = sorted(glob.glob(path))
        return matches[0] if matches else path
    return path


def read_kinetics_csv(csv_path: str, *, video_root: Optional[str] = None,
                      path_pattern: str = DEFAULT_KINETICS_PATTERN,
                      labels: Optional[Iterable[str]] = None) -> List[VideoItem]:
    """Rows `label,youtube_id,time_start,time_end,split[,is_cc]` (header optional).

    video_id is `<youtube_id>_<start:06d>_<end:06d>`; missing files are kept
    (the builder records them as `not_found`). `labels`, if given, keeps only
    rows with those labels (e.g. Kinetics-Sounds).
    """
    root = video_root or os.path.dirname(os.path.abspath(csv_path))
    keep = None if labels is None else set(labels)
    items = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return items
    header = [h.strip() for h in rows[0]]
    if "youtube_id" in header:
        rows = rows[1:]
    else:
        header = ["label", "youtube_id", "time_start", "time_end", "split", "is_cc"]
    for values in rows:
        if not values or not any(v.strip() for v in values):
            continue
        row = {k: v.strip() for k, v in zip(header, values)}
        row.setdefault("label", "")
        row.setdefault("split", "")
        row["time_start"] = int(float(row["time_start"]))
        row["time_end"] = int(float(row["time_end"]))
        if keep is not None and row["label"] not in keep:
            continue
        check_split(row["split"])
        video_id = f"{row['youtube_id']}_{row['time_start']:06d}_{row['time_end']:06d}"
        items.append(VideoItem(path=kinetics_path(row, root, path_pattern), video_id=video_id,
                               label=row["label"], split=row["split"]))
    return items


def enumerate_videos(input_path: str, *, split: str = "train", label_from_parent_dir: bool = False,
                     video_root: Optional[str] = None,
                     kinetics_path_pattern: str = DEFAULT_KINETICS_PATTERN,
                     labels: Optional[Sequence[str]] = None) -> List[VideoItem]:
    """All videos of an input (kind detected), sorted by (split, video_id), ids unique.

    `labels` keeps only videos with those labels (any input kind).
    """
    kind = detect_kind(input_path)
    if kind == "folder":
        items = list_folder(input_path, split=split, label_from_parent_dir=label_from_parent_dir)
    elif kind == "list":
        items = read_list_file(input_path, split=split, label_from_parent_dir=label_from_parent_dir,
                               video_root=video_root)
    else:
        items = read_kinetics_csv(input_path, video_root=video_root,
                                  path_pattern=kinetics_path_pattern, labels=labels)
    if labels is not None:
        wanted = set(labels)
        items = [it for it in items if it.label in wanted]
    unique = {}
    for item in items:
        unique.setdefault((item.split, item.video_id), item)  # first occurrence wins
    if len(unique) < len(items):
        log.warning("%s: %d duplicate entries ignored (same split and id)", input_path,
                    len(items) - len(unique))
    return sorted(unique.values(), key=lambda it: (it.split, it.video_id))
