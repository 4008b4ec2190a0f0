"""The builder carries object boxes beside the shards (tfrecords/boxes.py, issue 22)."""

import json
import os

import numpy as np

from l3.demo import corpus
from l3.eval import localization_io
from l3_tfrecords import boxes, builder
from l3_tfrecords.inputs import VideoItem


def test_sidecar_keeps_written_videos_and_matches_vggss_ids(tmp_path):
    out = tmp_path / "records"
    (out / "_shard_stats").mkdir(parents=True)
    (out / "_shard_stats" / "test-00000-of-00001.json").write_text(json.dumps(
        {"skipped": [{"video_id": "bbb_000010_000020", "reason": "decode_error"}]}))
    vgg = tmp_path / "vggss.json"
    vgg.write_text(json.dumps([
        {"file": "aaa_000030", "class": "dog", "bbox": [[0.1, 0.2, 0.3, 0.4]]},
        {"file": "bbb_000010", "class": "cat", "bbox": [[0, 0, 1, 1]]}]))
    items = [VideoItem("a.mp4", "aaa_000030_000040"), VideoItem("b.mp4", "bbb_000010_000020"),
             VideoItem("c.mp4", "ccc_000000_000010")]
    counts = boxes.write_boxes_sidecar(str(vgg), str(out), items)
    assert counts == {"videos_with_boxes": 1, "videos_without_boxes": 1}
    truth = localization_io.read_truth(str(out / boxes.BOXES_NAME))
    assert list(truth) == ["aaa_000030_000040"]          # keyed by the record's id
    frame, = truth["aaa_000030_000040"].frames
    assert frame.time is None and truth["aaa_000030_000040"].attributes["label"] == "dog"
    np.testing.assert_allclose(frame.boxes, [[0.1, 0.2, 0.3, 0.4]])


def test_build_with_boxes_writes_them_for_the_records(tmp_path):
    info = corpus.generate_corpus(tmp_path / "corpus", num_classes=2, progress=False,
                                  videos_per_class={"train": 0, "val": 0, "test": 2}, seconds=2,
                                  duration_jitter=0, fps=4, size=(64, 80))
    config = builder.BuildConfig(output_dir=str(tmp_path / "records"), num_shards=1, workers=0,
                                 progress=False, boxes=str(info.objects_path))
    result = builder.build_from_input(str(info.csv_path), config, video_root=str(info.root))
    assert result["this_run"]["boxes"] == {"videos_with_boxes": 4, "videos_without_boxes": 0}
    carried = localization_io.read_truth(os.path.join(config.output_dir, boxes.BOXES_NAME))
    original = localization_io.read_truth(str(info.objects_path))
    assert sorted(carried) == sorted(original)   # every test video was written
    for vid, video in original.items():
        assert carried[vid].attributes == video.attributes
        for a, b in zip(carried[vid].frames, video.frames, strict=True):
            assert a.time == b.time and a.mask == b.mask
            np.testing.assert_array_equal(a.boxes, b.boxes)
