"""l3-retrieval and l3-localize end to end on a random-weight small export and synthetic
labelled records with boxes (the numbers only say the code runs; the demo measures)."""

import copy
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from PIL import Image

from l3 import media
from l3.core import errors
from l3.eval import localization as loc
from l3.eval import localization_data, localization_io, localization_run, retrieval
from l3.eval.analysis import encoders, synthetic
from tests.bin.test_cli import assert_one_line_error


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """A random small export, 12 labelled videos (6 classes) in 2 shards and their boxes."""
    root = tmp_path_factory.mktemp("tools")
    synthetic.random_export(str(root / "export"), "small", seed=1)
    synthetic.write_labelled_shards(str(root / "tfrecords"), num_videos=12, num_shards=2,
                                    boxes_path=str(root / "boxes.json"))
    return str(root / "export"), str(root / "tfrecords" / "test-*.tfrecord"), root


@pytest.fixture(scope="module")
def tool_results(stand_in):
    """The retrieval (2 items per video) and localization (2 frames per video, a 3-row
    figure) results on the stand-in, computed once for the tests that read them."""
    export_dir, pattern, root = stand_in
    return {"retrieval": retrieval.evaluate_retrieval(export_dir, pattern, items_per_video=2),
            "localization": localization_run.evaluate_localization(
                export_dir, pattern, str(root / "boxes.json"), str(root / "loc"),
                frames_per_video=2, figure_items=3),
            "localization_dir": str(root / "loc")}


def test_retrieval_rows_and_chance(tool_results):
    result = tool_results["retrieval"]
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


def test_localization_rows_files_and_figure(tool_results):
    result, out = tool_results["localization"], tool_results["localization_dir"]
    assert result["num_items"] == 24
    assert set(result["rows"]) == {"trained", "trained_gradcam", "trained_other_sound",
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
    # Two-source scenes: every item beside a frame of another label (6 classes here).
    duet = saved["duet"]
    assert duet["num_items"] == 24 and set(duet["rows"]) == set(duet["rows_box"]) == {
        "trained", "trained_partner_sound", "untrained", "unconditioned", "center_prior"}
    labels = {(i["video_id"], i["time"]): i["label"] for i in saved["items"]}
    for item in duet["items"]:
        assert labels[(item["video_id"], item["time"])] != labels[(item["partner_video_id"],
                                                                    item["partner_time"])]
        # the per-frame centre prior is symmetric: 1/3 against either frame
        assert item["cIoU"]["center_prior"] == pytest.approx(1 / 3, abs=0.01)
    assert 0 < sum(i["left"] for i in duet["items"]) < 24
    assert duet["rows"]["center_prior"]["cIoU@0.5"] == 0
    with open(os.path.join(out, duet["figure"]), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "two-source scenes" in localization_run.format_table(result)


def test_unknown_ids_are_an_input_error(stand_in, tmp_path):
    export_dir, pattern, _ = stand_in
    other = tmp_path / "other.json"
    localization_io.write_truth(str(other), {"someone_else": {"frames": [
        {"time": 0.5, "boxes": [[0, 0, 1, 1]]}]}})
    with pytest.raises(errors.UsageError, match="none of the 12 video ids .* is in"):
        localization_run.evaluate_localization(export_dir, pattern, str(other))


def _run_modules(calls):
    """{name: CompletedProcess} of `python -m` calls, started together (each imports TF)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    procs = {k: subprocess.Popen([sys.executable, "-m", *v], env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for k, v in calls.items()}
    outputs = {k: p.communicate(timeout=600) for k, p in procs.items()}
    return {k: subprocess.CompletedProcess(p.args, p.returncode, *outputs[k])
            for k, p in procs.items()}


def test_localize_binary_on_a_media_dir(stand_in, tmp_path):
    """l3-localize on a VGG-SS-style folder (--media_dir); the slow test below runs
    l3-retrieval and l3-localize on records."""
    export_dir, _, _ = stand_in
    _vggss_folder(tmp_path / "vggss")
    done = _run_modules({
        "localize": ["l3.bin.localize", f"--export_dir={export_dir}",
                     f"--media_dir={tmp_path}/vggss", f"--boxes={tmp_path}/vggss/vggss.json",
                     f"--output_dir={tmp_path}/loc", "--figure_items=0", "--nountrained",
                     "--noduets"]})
    assert done["localize"].returncode == 0, done["localize"].stderr[-3000:]
    assert "cIoU@0.5" in done["localize"].stdout
    located = json.load(open(tmp_path / "loc" / "localization.json"))
    assert set(located["rows"]) == {"trained", "trained_gradcam", "trained_other_sound",
                                    "unconditioned", "center_prior"}
    assert located["num_items"] == 3 and located["media_dir"] == f"{tmp_path}/vggss"
    assert [item["video_id"] for item in located["items"]] == list(VGGSS_IDS)
    assert "duet" not in located and "two-source" not in done["localize"].stdout
    # The progress bar (stderr, on by default): the trained network's heatmaps of 3 frames.
    assert "heatmaps, trained: 100%" in done["localize"].stderr and "3/3" in done["localize"].stderr
    assert "heatmaps, untrained" not in done["localize"].stderr


@pytest.mark.slow
def test_analyze_binary_and_bad_inputs(stand_in, tmp_path):
    """l3-analyze with --boxes, l3-retrieval and l3-localize on records; bad inputs of l3-localize and
    l3-analyze (a missing box file, a box file without boxes, localization without boxes,
    a --media_dir without frames/, both --data_pattern and --media_dir): one line, exit 2,
    nothing written."""
    export_dir, pattern, root = stand_in
    nobox = tmp_path / "nobox.json"
    nobox.write_text('{"format": "l3-boxes/1", "videos": {"test_0000": {"frames": [{"time": 1}]}}}')
    common = [f"--export_dir={export_dir}", f"--data_pattern={pattern}"]
    done = _run_modules({
        "analyze": ["l3.bin.analyze", *common, f"--output_dir={tmp_path}/analysis",
                    "--analyses=retrieval,localization", f"--boxes={root}/boxes.json",
                    "--localization_frames_per_video=2"],
        "analyze_nobox": ["l3.bin.analyze", *common, f"--output_dir={tmp_path}/bad3",
                          "--analyses=nmi,localization"],
        "missing": ["l3.bin.localize", *common, f"--boxes={tmp_path}/none.json",
                    f"--output_dir={tmp_path}/bad1"],
        "nobox": ["l3.bin.localize", *common, f"--boxes={nobox}", f"--output_dir={tmp_path}/bad2"],
        "retrieval": ["l3.bin.retrieval", *common, f"--output_json={tmp_path}/r.json",
                      "--scorers=fusion", "--nountrained"],
        "localize": ["l3.bin.localize", *common, f"--boxes={root}/boxes.json",
                     f"--output_dir={tmp_path}/loc", "--figure_items=0", "--nountrained"],
        "no_media": ["l3.bin.localize", f"--export_dir={export_dir}", f"--media_dir={tmp_path}",
                     f"--boxes={root}/boxes.json", f"--output_dir={tmp_path}/bad4"],
        "both": ["l3.bin.localize", *common, f"--media_dir={tmp_path}",
                 f"--boxes={root}/boxes.json", f"--output_dir={tmp_path}/bad5"],
    })
    assert done["localize"].returncode == 0, done["localize"].stderr[-3000:]
    assert "cIoU@0.5" in done["localize"].stdout
    assert json.load(open(tmp_path / "loc" / "localization.json"))["num_items"] == 12
    assert done["retrieval"].returncode == 0, done["retrieval"].stderr[-3000:]
    assert "R@10" in done["retrieval"].stdout
    assert "embedding (both towers): 100%" in done["retrieval"].stderr   # 12 items x 2 towers
    assert "24/24" in done["retrieval"].stderr
    assert set(json.load(open(tmp_path / "r.json"))["image_to_audio"]) == {"trained", "chance"}
    assert done["analyze"].returncode == 0, done["analyze"].stderr[-3000:]
    analysis = json.load(open(tmp_path / "analysis" / "analysis.json"))
    assert analysis["retrieval"]["num_items"] == 12 and analysis["localization"]["num_items"] == 24
    assert "figure" in analysis["localization"] and "localization" in analysis["figures"]
    assert os.path.exists(tmp_path / "analysis" / analysis["figures"]["localization_duet"])
    assert "sound-source localization" in done["analyze"].stdout and "R@10" in done["analyze"].stdout
    assert "two-source scenes" in done["analyze"].stdout
    for k, prog, expected in (
            ("missing", "l3-localize", f"--boxes={tmp_path}/none.json does not exist"),
            ("nobox", "l3-localize", "frame 0 has no \"boxes\" or \"time\""),
            ("analyze_nobox", "l3-analyze", "--analyses=localization needs --boxes"),
            ("no_media", "l3-localize", f"{tmp_path}/frames does not exist"),
            ("both", "l3-localize", "data_pattern")):
        assert_one_line_error(done[k], prog, expected)
    assert not any((tmp_path / f"bad{i}").exists() for i in (1, 2, 3, 4, 5))


def test_localization_analysis_needs_boxes(stand_in, tmp_path):
    export_dir, pattern, _ = stand_in
    from l3.eval.analysis import run as run_lib
    with pytest.raises(errors.UsageError, match="needs a box file"):
        run_lib.analyze(export_dir, pattern, str(tmp_path / "x"), analyses="localization")
    assert not (tmp_path / "x").exists()


def test_demo_summary_has_the_issues_keys(tool_results):
    """Retrieval and localization results (as l3-analyze returns them: its slow test and
    test_analyze_end_to_end check that wiring) become the demo's summary.json keys
    (retrieval.image_to_audio.{trained,untrained,chance}."R@10", ...), targets and table."""
    from l3.demo import run as demo
    res = tool_results
    # The scene split's result, told apart from the test split's: the same result with the
    # trained row moved above every other (the demo's own wiring of the scene split:
    # test_demo_scene_localization_reads_the_scene_shards).
    scene = copy.deepcopy(res["localization"])
    scene["rows"]["trained"]["cIoU@0.5"] = 0.99
    summary = {**demo.retrieval_summary(res["retrieval"]),
               **demo.localization_summary(res["localization"], scene=scene)}
    for direction in ("image_to_audio", "audio_to_image"):
        for row in ("trained", "untrained", "chance"):
            for key in ("R@1", "R@5", "R@10", "median_rank"):
                assert isinstance(summary["retrieval"][direction][row][key], float)
    for row in ("trained", "untrained", "center_prior", "unconditioned"):
        for key in ("cIoU@0.5", "AUC"):
            for name in ("localization", "localization_single_object", "localization_duet"):
                assert isinstance(summary[name][row][key], float)
    # The headline is the scene split; the test split's single frames are kept apart.
    assert summary["localization"] == scene["rows"]
    assert summary["localization_single_object"] == res["localization"]["rows"]
    assert summary["localization_detail"]["split"] == "scene"
    assert summary["localization_single_object_detail"]["split"] == "test"
    assert summary["localization_detail"]["num_items"] == 24
    met = demo.targets_met_beyond_paper(summary)
    rows = summary["retrieval"]["image_to_audio"]
    assert met["retrieval_r10"] == (rows["trained"]["R@10"] >= 2 * max(rows["untrained"]["R@10"],
                                                                      rows["chance"]["R@10"]))
    rivals = ("untrained", "center_prior", "unconditioned")
    for name in ("localization", "localization_single_object", "localization_duet"):
        rows = summary[name]
        assert met[f"{name}_ciou"] == all(rows["trained"]["cIoU@0.5"] > rows[r]["cIoU@0.5"]
                                          for r in rivals)
    assert met["localization_ciou"]
    table = "\n".join(demo.beyond_paper_table(summary))
    assert "image->audio R@10" in table and "cIoU@0.5" in table and "two-source scenes" in table
    assert table.index("24 scene-split frames") < table.index("24 single-object test frames")
    # Without a scene split the test split's single frames are the headline.
    alone = demo.localization_summary(res["localization"])
    assert alone["localization"] == res["localization"]["rows"]
    assert alone["localization_detail"]["split"] == "test"
    assert "localization_single_object" not in alone


def test_demo_scene_localization_reads_the_scene_shards(stand_in, tmp_path):
    """The demo's scene stage runs on work_dir/tfrecords/scene-*.tfrecord (here the
    stand-in's shards under that name) with the boxes beside them, one frame per video, no
    duets, and writes analysis/scene/; without scene shards it runs nothing."""
    from l3.demo import run as demo
    export_dir, pattern, root = stand_in
    config = demo.DemoConfig(work_dir=str(tmp_path), localization_frames_per_video=1)
    os.makedirs(config.path("tfrecords"))
    os.symlink(export_dir, config.out("export"))
    assert demo._scene_localization(config) is None
    for k, path in enumerate(sorted(glob.glob(pattern))):
        shutil.copy(path, config.path("tfrecords", f"scene-{k:05d}-of-00002.tfrecord"))
    shutil.copy(root / "boxes.json", config.path("tfrecords", "boxes.json"))
    result = demo._scene_localization(config)
    assert result["num_items"] == 12 and result["frames_per_video"] == 1 and "duet" not in result
    assert result["figure"] == os.path.join("scene", "localization.png")   # under analysis/
    assert os.path.exists(config.path("analysis", "scene", "localization.json"))
    assert os.path.exists(config.path("analysis", "scene", "localization.png"))


VGGSS_IDS = ("aaa_000010", "bbb_000020", "ccc_000030")


def _ramp_sound(seconds: float, rate: int, k: int) -> np.ndarray:
    """A ramp from -0.45 to 0.45 over the file plus a quiet tone: its value says the time."""
    t = np.arange(int(seconds * rate)) / rate
    return 0.9 * (t / seconds - 0.5) + 0.05 * np.sin(2 * np.pi * 200 * (k + 1) * t)


def _vggss_folder(root) -> list:
    """root/frames/<id>.jpg (a bright block, its box the truth), root/audio/<id>.wav (3 s at
    16 kHz) and root/vggss.json (VGG-SS's list, plus an id without media); the annotations."""
    (root / "frames").mkdir(parents=True)
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    annotations = []
    for k, vid in enumerate(VGGSS_IDS):
        img = (rng.random((120, 160, 3)) * 80).astype(np.uint8)
        img[30:90, 40 + 20 * k:100 + 20 * k] = 250          # the bright thing
        Image.fromarray(img).save(root / "frames" / f"{vid}.jpg")
        media.write_wav(str(root / "audio" / f"{vid}.wav"), _ramp_sound(3.0, 16000, k), 16000)
        annotations.append({"file": vid, "class": "thing",
                            "bbox": [[(40 + 20 * k) / 160, 30 / 120, (100 + 20 * k) / 160, 90 / 120]]})
    annotations.append({"file": "not_downloaded", "class": "x", "bbox": [[0, 0, 1, 1]]})
    (root / "vggss.json").write_text(json.dumps(annotations))
    return annotations


def test_localize_a_vggss_style_folder(stand_in, tmp_path):
    """frames/<id>.jpg + audio/<id>.wav and VGG-SS's annotation list, as EZ-VSL reads them."""
    export_dir, _, _ = stand_in
    annotations = _vggss_folder(tmp_path)
    result = localization_run.evaluate_localization(
        export_dir, None, str(tmp_path / "vggss.json"), str(tmp_path / "out"),
        media_dir=str(tmp_path), figure_items=0, duets=False)
    assert result["num_items"] == 3 and result["skipped"]["ids_without_media"] == 1
    assert "duet" not in result
    assert [i["video_id"] for i in result["items"]] == list(VGGSS_IDS)
    # Each item's truth is its own VGG-SS box over the whole (squeezed) frame.
    for item, ann in zip(result["items"], annotations):
        want = loc.ciou(loc.center_prior(), localization_io.box_map(np.array(ann["bbox"])))
        assert item["cIoU"]["center_prior"] == pytest.approx(want, abs=1e-4)
    assert result["items"][0]["time"] == pytest.approx(1.5, abs=0.01)   # the audio's middle
    # The sound is the second centred on that time (1 s to 2 s of the ramp), at the
    # preset's rate: a clip taken from the start or at 48 kHz would not match.
    preset = encoders.export_preset(export_dir)
    items = localization_data.read_media_items(
        str(tmp_path), preset, localization_io.read_truth(str(tmp_path / "vggss.json")))
    rate = preset.sample_rate   # 16 kHz, the small preset's
    for k in range(3):
        want = _ramp_sound(3.0, rate, k)[rate:2 * rate]
        np.testing.assert_allclose(items.waveforms[k][100:-100], want[100:-100], atol=0.01)
    np.testing.assert_array_equal(items.gt[1], localization_io.box_map(
        np.array(annotations[1]["bbox"])))


def test_media_dir_errors(stand_in, tmp_path):
    export_dir, _, _ = stand_in
    _vggss_folder(tmp_path)
    boxes = str(tmp_path / "vggss.json")
    with pytest.raises(errors.MissingInputError, match="frames/frames does not exist"):
        localization_run.evaluate_localization(export_dir, None, boxes,
                                               media_dir=str(tmp_path / "frames"))
    for d in ("frames", "audio"):
        (tmp_path / "other" / d).mkdir(parents=True)
    with pytest.raises(errors.UsageError, match="none of the 4 ids .* has both"):
        localization_run.evaluate_localization(export_dir, None, boxes,
                                               media_dir=str(tmp_path / "other"))
    (tmp_path / "frames" / f"{VGGSS_IDS[1]}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(errors.UsageError, match=f"cannot read the frame .*{VGGSS_IDS[1]}.jpg"):
        localization_run.evaluate_localization(export_dir, None, boxes, media_dir=str(tmp_path))
    (tmp_path / "frames" / f"{VGGSS_IDS[1]}.jpg").unlink()
    (tmp_path / "audio" / f"{VGGSS_IDS[0]}.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(errors.UsageError, match=f"cannot read the sound .*{VGGSS_IDS[0]}.wav"):
        localization_run.evaluate_localization(export_dir, None, boxes, media_dir=str(tmp_path))
