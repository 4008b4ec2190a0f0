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


def _run_modules(calls):
    """{name: CompletedProcess} of `python -m` calls, started together (each imports TF)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    procs = {k: subprocess.Popen([sys.executable, "-m", *v], env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for k, v in calls.items()}
    outputs = {k: p.communicate(timeout=600) for k, p in procs.items()}
    return {k: subprocess.CompletedProcess(p.args, p.returncode, *outputs[k])
            for k, p in procs.items()}


def test_binaries_end_to_end(stand_in, tmp_path):
    export_dir, pattern, root = stand_in
    common = [f"--export_dir={export_dir}", f"--data_pattern={pattern}"]
    done = _run_modules({
        "retrieval": ["l3.bin.retrieval", *common, f"--output_json={tmp_path}/r.json",
                      "--scorers=fusion", "--nountrained"],
        "localize": ["l3.bin.localize", *common, f"--boxes={root}/boxes.json",
                     f"--output_dir={tmp_path}/loc", "--figure_items=0", "--nountrained"]})
    for proc in done.values():
        assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.load(open(tmp_path / "r.json"))
    assert set(saved["image_to_audio"]) == {"trained", "chance"}
    assert "R@10" in done["retrieval"].stdout and "cIoU@0.5" in done["localize"].stdout
    assert set(json.load(open(tmp_path / "loc" / "localization.json"))["rows"]) == {
        "trained", "trained_fusion_map", "trained_other_sound", "unconditioned", "center_prior"}


@pytest.mark.slow
def test_analyze_binary_and_bad_inputs(stand_in, tmp_path):
    """l3-analyze with --boxes; bad inputs of l3-localize and l3-analyze (a missing box file,
    a box file without boxes, localization without boxes): one line, exit 2, nothing written."""
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
    })
    assert done["analyze"].returncode == 0, done["analyze"].stderr[-3000:]
    analysis = json.load(open(tmp_path / "analysis" / "analysis.json"))
    assert analysis["retrieval"]["num_items"] == 12 and analysis["localization"]["num_items"] == 24
    assert "figure" in analysis["localization"] and "localization" in analysis["figures"]
    assert "sound-source localization" in done["analyze"].stdout and "R@10" in done["analyze"].stdout
    for k, prog, expected in (
            ("missing", "l3-localize", f"--boxes={tmp_path}/none.json does not exist"),
            ("nobox", "l3-localize", "frame 0 has no \"boxes\" or \"time\""),
            ("analyze_nobox", "l3-analyze", "--analyses=localization needs --boxes")):
        assert_one_line_error(done[k], prog, expected)
    assert not any((tmp_path / f"bad{i}").exists() for i in (1, 2, 3))


def test_localization_analysis_needs_boxes(stand_in, tmp_path):
    export_dir, pattern, _ = stand_in
    from l3.eval.analysis import run as run_lib
    with pytest.raises(errors.UsageError, match="needs a box file"):
        run_lib.analyze(export_dir, pattern, str(tmp_path / "x"), analyses="localization")
    assert not (tmp_path / "x").exists()


def test_demo_summary_has_the_issues_keys(stand_in, tmp_path):
    """The analysis' retrieval and localization results become the demo's summary.json keys
    (retrieval.image_to_audio.{trained,untrained,chance}."R@10", ...), targets and table."""
    from l3.demo import run as demo
    from l3.eval.analysis import run as run_lib
    export_dir, pattern, root = stand_in
    res = run_lib.analyze(export_dir, pattern, str(tmp_path / "a"),
                          analyses="retrieval,localization", boxes=str(root / "boxes.json"))
    summary = {**demo.retrieval_summary(res["retrieval"]),
               **demo.localization_summary(res["localization"])}
    for direction in ("image_to_audio", "audio_to_image"):
        for row in ("trained", "untrained", "chance"):
            for key in ("R@1", "R@5", "R@10", "median_rank"):
                assert isinstance(summary["retrieval"][direction][row][key], float)
    for row in ("trained", "untrained", "center_prior", "unconditioned"):
        for key in ("cIoU@0.5", "AUC"):
            assert isinstance(summary["localization"][row][key], float)
    met = demo.targets_met_beyond_paper(summary)
    rows = summary["retrieval"]["image_to_audio"]
    assert met["retrieval_r10"] == (rows["trained"]["R@10"] >= 2 * max(rows["untrained"]["R@10"],
                                                                      rows["chance"]["R@10"]))
    table = "\n".join(demo.beyond_paper_table(summary))
    assert "image->audio R@10" in table and "cIoU@0.5" in table


def test_localize_a_vggss_style_folder(stand_in, tmp_path):
    """frames/<id>.jpg + audio/<id>.wav and VGG-SS's annotation list, as EZ-VSL reads them."""
    import wave
    from PIL import Image
    export_dir, _, _ = stand_in
    (tmp_path / "frames").mkdir()
    (tmp_path / "audio").mkdir()
    rng = np.random.default_rng(0)
    annotations = []
    for k, vid in enumerate(["aaa_000010", "bbb_000020", "ccc_000030"]):
        img = (rng.random((120, 160, 3)) * 80).astype(np.uint8)
        img[30:90, 40 + 20 * k:100 + 20 * k] = 250          # the bright thing
        Image.fromarray(img).save(tmp_path / "frames" / f"{vid}.jpg")
        samples = (3000 * np.sin(2 * np.pi * 440 * (k + 1) * np.arange(3 * 16000) / 16000)).astype("<i2")
        with wave.open(str(tmp_path / "audio" / f"{vid}.wav"), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
            w.writeframes(samples.tobytes())
        annotations.append({"file": vid, "class": "thing",
                            "bbox": [[(40 + 20 * k) / 160, 30 / 120, (100 + 20 * k) / 160, 90 / 120]]})
    annotations.append({"file": "not_downloaded", "class": "x", "bbox": [[0, 0, 1, 1]]})
    (tmp_path / "vggss.json").write_text(json.dumps(annotations))
    result = localization_run.evaluate_localization(
        export_dir, None, str(tmp_path / "vggss.json"), str(tmp_path / "out"),
        media_dir=str(tmp_path), figure_items=0)
    assert result["num_items"] == 3 and result["skipped"]["records_without_truth"] == 1
    assert [i["video_id"] for i in result["items"]] == ["aaa_000010", "bbb_000020", "ccc_000030"]
    # Each item's truth is its own VGG-SS box over the whole (squeezed) frame.
    from l3.eval import localization as loc
    for item, ann in zip(result["items"], annotations):
        want = loc.ciou(loc.center_prior(), localization_io.box_map(np.array(ann["bbox"])))
        assert item["cIoU"]["center_prior"] == pytest.approx(want, abs=1e-4)
    assert result["items"][0]["time"] == pytest.approx(1.5, abs=0.01)   # the audio's middle
    with pytest.raises(errors.MissingInputError, match="frames/frames does not exist"):
        localization_run.evaluate_localization(export_dir, None, str(tmp_path / "vggss.json"),
                                               media_dir=str(tmp_path / "frames"))
    for d in ("frames", "audio"):
        (tmp_path / "other" / d).mkdir(parents=True)
    with pytest.raises(errors.UsageError, match="none of the 4 ids .* has both"):
        localization_run.evaluate_localization(export_dir, None, str(tmp_path / "vggss.json"),
                                               media_dir=str(tmp_path / "other"))
