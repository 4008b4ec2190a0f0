"""The demo's beyond-the-paper table: every column header whole, every number under
its header (the header 'unconditioned' was once cut to 'unconditione')."""

from l3.demo import run


def test_long_case_labels_keep_the_columns_aligned():
    """A case label with a 3-digit count ("distractor visible (400)") once pushed its row
    one character right of the headers."""
    rows = {n: {"cIoU@0.5": 0.1, "AUC": 0.2} for n in ("trained", "untrained", "center_prior")}
    by_case = {"distractor_visible": {n: {"cIoU@0.5": 0.345, "n": 400} for n in rows},
               "unrelated_sound": {n: {"cIoU@0.5": 0.0, "n": 20} for n in rows}}
    lines = run.beyond_paper_table({"localization": rows, "localization_detail": {
        "split": "scene", "num_items": 400, "method": "fusion_map", "by_case": by_case}})
    header = next(line for line in lines if "center_prior" in line)
    case_lines = [x for x in lines if x.startswith("    ") and x.strip()[0].isalpha()
                  and "(" in x]
    assert len(case_lines) == 2
    assert {len(x) for x in case_lines} == {len(header)}


def test_localization_rows_have_whole_headers_and_aligned_columns():
    rows = {"trained": {"cIoU@0.5": 0.093, "AUC": 0.245},
            "untrained": {"cIoU@0.5": 0.035, "AUC": 0.25},
            "unconditioned": {"cIoU@0.5": 0.13, "AUC": 0.309},
            "center_prior": {"cIoU@0.5": 0.205, "AUC": 0.337}}
    by_case = {"clean": {n: {"cIoU@0.5": v["cIoU@0.5"], "n": 7} for n, v in rows.items()}}
    lines = run.beyond_paper_table({"localization": rows, "localization_detail": {
        "num_items": 7, "method": "gradcam", "by_case": by_case}})
    header = next(line for line in lines if "center_prior" in line)
    assert header.split() == ["trained", "untrained", "unconditioned", "center_prior"]
    ends = [header.index(name) + len(name) for name in header.split()]
    for key, line in (("cIoU@0.5", "cIoU@0.5"), ("AUC", "AUC"), ("cIoU@0.5", "    clean")):
        (row,) = [x for x in lines if x.startswith(line)]
        values = row[34:].split()
        assert [float(v) for v in values] == [round(rows[n][key], 3) for n in header.split()]
        # each number ends where its header ends (right-aligned columns)
        assert [row.index(v, e - len(v)) + len(v) for v, e in zip(values, ends)] == ends, row


def _assert_two_object_block(lines, rows, title, other_label, other):
    """The block's title, its four columns with every number under its header, and the
    trained-with-another-sound line."""
    assert any(line.startswith(title) for line in lines)
    header = next(line for line in lines if "center_prior" in line)
    assert header.split() == ["trained", "untrained", "unconditioned", "center_prior"]
    ends = [header.index(name) + len(name) for name in header.split()]
    for key in ("cIoU@0.5", "AUC"):
        (row,) = [x for x in lines if x.startswith(key)]
        values = row[34:].split()
        assert [float(v) for v in values] == [rows[n][key] for n in header.split()]
        assert [row.index(v, e - len(v)) + len(v) for v, e in zip(values, ends)] == ends, row
    (line,) = [x for x in lines if other_label in x]
    assert float(line.split()[-1]) == rows[other]["cIoU@0.5"]


def test_two_source_rows_sit_under_their_headers():
    rows = {"trained": {"cIoU@0.5": 0.685, "AUC": 0.628},
            "trained_partner_sound": {"cIoU@0.5": 0.037, "AUC": 0.163},
            "untrained": {"cIoU@0.5": 0.065, "AUC": 0.339},
            "unconditioned": {"cIoU@0.5": 0.11, "AUC": 0.343},
            "center_prior": {"cIoU@0.5": 0.0, "AUC": 0.325}}
    lines = run.beyond_paper_table({"localization_duet": rows,
                                    "localization_duet_detail": {"num_items": 400}})
    _assert_two_object_block(lines, rows, "two-source scenes, 400 frames", "the other sound",
                             "trained_partner_sound")


def test_scene_split_rows_sit_under_their_headers():
    rows = {"trained": {"cIoU@0.5": 0.345, "AUC": 0.42},
            "trained_other_sound": {"cIoU@0.5": 0.113, "AUC": 0.231},
            "untrained": {"cIoU@0.5": 0.193, "AUC": 0.29},
            "unconditioned": {"cIoU@0.5": 0.172, "AUC": 0.292},
            "center_prior": {"cIoU@0.5": 0.0, "AUC": 0.307}}
    lines = run.beyond_paper_table({"localization": rows, "localization_detail": {
        "split": "scene", "num_items": 400, "method": "fusion_map"}})
    _assert_two_object_block(lines, rows, "sound-source localization, 400 scene-split frames",
                             "another video's sound", "trained_other_sound")
