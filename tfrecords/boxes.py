"""Object boxes carried beside the shards: output_dir/boxes.json (issue 22).

`l3-build-tfrecords --boxes=FILE` (an l3-boxes file such as the demo corpus's
objects.json, or VGG-SS's vggss.json; `l3.eval.localization_io`) writes, when the build
finishes, output_dir/boxes.json in the l3-boxes format: the entries of the videos now in
the shards, keyed by their records' video_id (a VGG-SS "file" id matches the Kinetics-style
record id that extends it; its frames keep "time": null, the clip's middle frame). Videos
in the shards are the build's input items minus those the shards' sidecars list as
skipped. `l3-localize --boxes=output_dir/boxes.json` then reads the shards' own truth.

The records themselves are unchanged (schema: `l3.records.schema`).
"""

import glob
import json
import os
from typing import Dict, Sequence

from l3.eval import localization_io

from . import shards

BOXES_NAME = "boxes.json"


def _entry(video: localization_io.VideoTruth) -> dict:
    frames = []
    for f in video.frames:
        frame = {"time": f.time, "boxes": f.boxes.tolist()}
        if f.mask is not None:
            frame["mask"] = f.mask
        if len(f.distractor_boxes):
            frame["distractor_boxes"] = f.distractor_boxes.tolist()
        frames.append(frame)
    return {**video.attributes, "frames": frames}


def skipped_ids(output_dir: str) -> set:
    """Video ids the shards' sidecars list as skipped."""
    out = set()
    for path in glob.glob(os.path.join(output_dir, shards.STATS_DIR, "*.json")):
        with open(path, encoding="utf-8") as f:
            out.update(s["video_id"] for s in json.load(f).get("skipped", ()))
    return out


def write_boxes_sidecar(boxes_path: str, output_dir: str, items: Sequence) -> Dict[str, int]:
    """Writes output_dir/boxes.json for the written videos among `items` (`VideoItem`s).

    Returns {"videos_with_boxes", "videos_without_boxes"} of the written videos.
    """
    truth = localization_io.read_truth(boxes_path)
    skipped = skipped_ids(output_dir)
    videos, missing = {}, 0
    for item in items:
        if item.video_id in skipped:
            continue
        video = localization_io.match_video(truth, item.video_id)
        if video is None:
            missing += 1
            continue
        videos[item.video_id] = _entry(video)
    localization_io.write_truth(os.path.join(output_dir, BOXES_NAME), videos)
    return {"videos_with_boxes": len(videos), "videos_without_boxes": missing}
