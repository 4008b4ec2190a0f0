"""l3-retrieval and l3-localize end to end on a random-weight small export and synthetic
labelled records with boxes (the numbers only say the code runs; the demo measures)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from l3.core import errors
from l3.eval import localization_io, localization_run, retrieval
from l3.eval.analysis import synthetic
from tests.bin.test_cli import assert_one_line_error


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """A random small export, 12 labelled videos (6 classes) in 2 shards and their boxes."""
    root = tmp_path_factory.mktemp("tools")
    synthetic.random_export(str(root / "export"), "small", seed=1)
    synthetic.write_labelled_shards(str(root / "tfrecords"), num_videos=12, num_shards=2,
                                    boxes_path=str(root / "boxes.json"))
    return str(root / "export"), str(root / "tfrecords" / "test-*.tfrecord"), root


def test_retrieval_rows_and_chance(stand_in):
    export_dir, pattern, _ = stand_in
    result = retrieval.evaluate_retrieval(export_dir, pattern, items_per_video=2)
    assert result["num_items"] == 24 and result["num_videos"] == 12 and result["class_level"]
    for direction in retrieval.DIRECTIONS:
        rows = result[direction]
        assert set(rows) == {"trained", "untrained", "trained_cosine", "untrained_cosine", "chance"}
        assert rows["chance"]["R@10"] == pytest.approx(10 / 24)
        assert rows["chance"]["median_rank"] == 12.5
        assert rows["chance"]["P@1"] == pytest.approx(4 / 24)   # 2 videos x 2 items per class
        for metrics in rows.values():
            assert 0 <= metrics["R@1"] <= metrics["R@5"] <= metrics["R@10"] <= 1
            assert 1 <= metrics["median_rank"] <= 24 and 0 < metrics["mAP"] <= 1
    assert "image to audio" in retrieval.format_table(result)


def test_localization_rows_files_and_figure(stand_in):
    export_dir, pattern, root = stand_in
    out = str(root / "loc")
    result = localization_run.evaluate_localization(export_dir, pattern, str(root / "boxes.json"),
                                                    out, frames_per_video=2, figure_items=3)
    assert result["num_items"] == 24
    assert set(result["rows"]) == {"trained", "trained_fusion_map", "trained_other_sound",
                                   "untrained", "unconditioned", "center_prior"}
    for row in result["rows"].values():
        assert row["n"] == 24 and 0 <= row["cIoU@0.5"] <= 1 and 0 <= row["AUC"] <= 1
    # The square is 1/9 of the height x ~1/4 of the width: the median rule caps cIoU at 2 x area.
    area = (96 // 3) * (96 // 3) / (96 * 128)
    assert all(max(item["cIoU"].values()) <= 2 * area + 0.02 for item in result["items"])
    assert result["by_case"] == {}   # the file names no distractors or off-screen sounds
    saved = json.load(open(os.path.join(out, localization_run.RESULTS_JSON)))
    assert saved["rows"] == result["rows"]
    with open(os.path.join(out, saved["figure"]), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "cIoU@0.5" in localization_run.format_table(result)


def test_unknown_ids_are_an_input_error(stand_in, tmp_path):
    export_dir, pattern, _ = stand_in
    other = tmp_path / "other.json"
    localization_io.write_truth(str(other), {"someone_else": {"frames": [
        {"time": 0.5, "boxes": [[0, 0, 1, 1]]}]}})
    with pytest.raises(errors.UsageError, match="none of the 12 video ids .* is in"):
        localization_run.evaluate_localization(export_dir, pattern, str(other))


def test_binaries_end_to_end_and_bad_input(stand_in, tmp_path):
    """Both console scripts on the stand-in, and l3-localize's bad inputs (a missing box
    file, a box file without boxes), each one line and exit 2, nothing written."""
    export_dir, pattern, root = stand_in
    nobox = tmp_path / "nobox.json"
    nobox.write_text('{"format": "l3-boxes/1", "videos": {"test_0000": {"frames": [{"time": 1}]}}}')
    common = [f"--export_dir={export_dir}", f"--data_pattern={pattern}"]
    calls = {
        "retrieval": ["l3.bin.retrieval", *common, f"--output_json={tmp_path}/r.json",
                      "--scorers=fusion", "--nountrained"],
        "localize": ["l3.bin.localize", *common, f"--boxes={root}/boxes.json",
                     f"--output_dir={tmp_path}/loc", "--figure_items=0", "--nountrained"],
        "missing": ["l3.bin.localize", *common, f"--boxes={tmp_path}/none.json",
                    f"--output_dir={tmp_path}/bad1"],
        "nobox": ["l3.bin.localize", *common, f"--boxes={nobox}", f"--output_dir={tmp_path}/bad2"],
    }
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    procs = {k: subprocess.Popen([sys.executable, "-m", *v], env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for k, v in calls.items()}
    done = {k: (p, *p.communicate(timeout=600)) for k, p in procs.items()}
    for k in ("retrieval", "localize"):
        proc, out, err = done[k]
        assert proc.returncode == 0, err[-3000:]
    saved = json.load(open(tmp_path / "r.json"))
    assert set(saved["image_to_audio"]) == {"trained", "chance"}
    assert "R@10" in done["retrieval"][1]
    assert set(json.load(open(tmp_path / "loc" / "localization.json"))["rows"]) == {
        "trained", "trained_fusion_map", "trained_other_sound", "unconditioned", "center_prior"}
    for k, expected in (("missing", f"--boxes={tmp_path}/none.json does not exist"),
                        ("nobox", "frame 0 has no \"boxes\" or \"time\"")):
        proc, out, err = done[k]
        assert_one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
                              "l3-localize", expected)
    assert not (tmp_path / "bad1").exists() and not (tmp_path / "bad2").exists()
