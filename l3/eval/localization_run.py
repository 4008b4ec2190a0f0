"""`evaluate_localization`: heatmaps of an export on annotated held-out frames, scored.

    result = evaluate_localization("demo_work/export", "demo_work/tfrecords/test-*.tfrecord",
                                   "demo_work/corpus/objects.json", "demo_work/localization")

Rows (each: cIoU@0.5, AUC, mean cIoU, n; `l3.eval.localization`):

  trained                the export's heatmap conditioned on the frame's own sound (`method`,
                         on conv4_2 made `shifts` times finer: `l3.eval.localization`)
  trained_<other method> the other heatmap method, same network and sound
  trained_other_sound    the same heatmap with another item's sound (a random derangement):
                         a heatmap that ignores the sound scores the same as "trained"
  untrained              an untrained network of the same preset (seeded), same method
  unconditioned          the trained network's sound-free activation map (mean over channels)
  center_prior           a centred Gaussian (after the median rule: the central half ellipse)

`duet` (with `duets`, the default): the same networks on two-source scenes, each frame
beside a frame of another label and the sound of one (`l3.eval.localization_duet`): rows
trained, trained_partner_sound, untrained, unconditioned, center_prior, scored against
the sounding frame ("rows") and its object's box ("rows_box"); figure
output_dir/localization_duet.png.

`by_case` repeats the rows on the items of each case (`localization_data.item_cases`:
clean, distractor visible, off-screen sound, silent gap, unrelated sound) when the truth
file describes them. Writes output_dir/localization.json (the returned dict, with each
item's cIoUs) and output_dir/localization.png (heatmaps on frames, true boxes drawn).
"""

import os
import time
from typing import Dict, Optional

import numpy as np
from tqdm import tqdm

from l3.core import errors, fileio
from l3.eval import localization as loc
from l3.eval import localization_data as ldata
from l3.eval import localization_duet as duet_lib
from l3.eval import localization_io as lio
from l3.eval.analysis import encoders, figures

RESULTS_JSON = "localization.json"
FIGURE = "localization.png"
DUET_FIGURE = "localization_duet.png"
ROWS = ("trained", "untrained", "center_prior", "unconditioned")


def _other_sound(video_ids, seed: int) -> np.ndarray:
    """A permutation giving each item the sound of another item, of another video where the
    data allow (a random cyclic shift by half the items, then local fixes)."""
    n = len(video_ids)
    order = np.random.default_rng(seed).permutation(n)
    perm = np.empty(n, np.int64)
    perm[order] = order[(np.arange(n) + n // 2) % n] if n > 1 else order
    for i in range(n):
        if video_ids[perm[i]] == video_ids[i]:
            j = next((j for j in range(n) if video_ids[perm[j]] != video_ids[i]
                      and video_ids[perm[i]] != video_ids[j]), None)
            if j is not None:
                perm[i], perm[j] = perm[j], perm[i]
    return perm


def _heatmaps(localizer: loc.Localizer, images: np.ndarray, rows: Dict, shifts: int,
              chunk: int = 64, desc: str = "heatmaps", progress: bool = False
              ) -> Dict[str, np.ndarray]:
    """{row: float32 [n, h', w']}: each row's fn(dense conv4_2 maps of items i, i) over
    chunks of items (the dense maps of every item at once would not fit: 2.6 GB for 400
    paper-preset frames at 4 shifts; a chunk of 64 such frames is 411 MB, of 32
    two-frame scenes the same). `images`: an array or a `localization_duet.SideBySide`.
    `progress`: a progress bar (tqdm, on stderr) described by `desc`, counting frames."""
    out = {name: [] for name in rows}
    with tqdm(total=len(images), desc=desc, unit="frame", disable=not progress) as bar:
        for begin in range(0, len(images), chunk):
            i = np.arange(begin, min(begin + chunk, len(images)))
            maps = localizer.dense_maps(images[i], shifts)
            for name, fn in rows.items():
                out[name].append(np.asarray(fn(maps, i), np.float32))
            bar.update(len(i))
    return {name: np.concatenate(parts) for name, parts in out.items()}


def _cious(heat: np.ndarray, gt: np.ndarray, size: int) -> np.ndarray:
    return np.array([loc.ciou(loc.upsample(h, size), g) for h, g in zip(heat, gt)])


def evaluate_localization(export_dir: str, data_pattern: Optional[str], boxes_path: str,
                          output_dir: Optional[str] = None, *, media_dir: Optional[str] = None,
                          method: str = loc.METHODS[0], shifts: int = loc.DENSE_SHIFTS,
                          frames_per_video: int = 1, view: str = "squeeze", gt: str = "box",
                          tolerance: float = 0.1, max_items: Optional[int] = None,
                          untrained: bool = True, duets: bool = True, seed: int = 0,
                          batch_size: int = 32, figure_items: int = 6, log=None,
                          progress: bool = False) -> Dict:
    """Localization rows for an export on annotated records (module docstring), or on a
    folder of frames/<id>.jpg and audio/<id>.wav (`media_dir`, EZ-VSL's test layout)
    instead of records (`data_pattern` None). `progress`: a progress bar per network and
    kind of frame while the heatmaps are made (the long part: shifts^2 passes a frame)."""
    if method not in loc.METHODS:
        raise errors.UsageError(f"unknown method {method!r}; choose from {list(loc.METHODS)}")
    if shifts < 1:
        raise errors.UsageError(f"shifts must be >= 1, got {shifts}")
    log = log or (lambda message: None)
    start = time.time()
    truth = lio.read_truth(boxes_path)
    preset = encoders.export_preset(export_dir)
    if (data_pattern is None) == (media_dir is None):
        raise errors.UsageError("give exactly one of data_pattern and media_dir")
    if media_dir is not None:
        items = ldata.read_media_items(media_dir, preset, truth, view=view, gt=gt,
                                       max_items=max_items, truth_name=boxes_path)
    else:
        items = ldata.read_items(data_pattern, preset, truth, frames_per_video=frames_per_video,
                                 view=view, gt=gt, tolerance=tolerance, max_items=max_items,
                                 truth_name=boxes_path)
    trained = loc.Localizer(encoders.exported_avc_model(export_dir), batch_size)
    log(f"{len(items)} annotated frames of {len(set(items.video_ids))} videos "
        f"(skipped: {items.skipped}), preset {preset.name}, view {view}, gt {gt}")
    size = items.gt.shape[-1]

    sound = trained.audio_embeddings(items.waveforms)
    other = [m for m in loc.METHODS if m != method][0]
    perm = _other_sound(items.video_ids, seed)
    rows = {"trained": lambda maps, i: trained.heatmaps(maps, sound[i], method),
            f"trained_{other}": lambda maps, i: trained.heatmaps(maps, sound[i], other),
            "trained_other_sound": lambda maps, i: trained.heatmaps(maps, sound[perm[i]], method),
            "unconditioned": lambda maps, i: loc.unconditioned_map(maps)}
    heat = _heatmaps(trained, items.images, rows, shifts, desc="heatmaps, trained",
                     progress=progress)
    net = net_sound = None
    if untrained:
        net = loc.Localizer(encoders.untrained_avc_model(preset, seed), batch_size)
        net_sound = net.audio_embeddings(items.waveforms)
        heat.update(_heatmaps(net, items.images, {
            "untrained": lambda maps, i: net.heatmaps(maps, net_sound[i], method)}, shifts,
            desc="heatmaps, untrained", progress=progress))
    pairs = duet_lib.make_duets(items, seed) if duets else None
    duet_heat = {}
    if pairs is not None:
        duet_heat = _heatmaps(trained, pairs.images, {
            "trained": lambda maps, k: trained.heatmaps(maps, sound[pairs.item[k]], method),
            "trained_partner_sound":
                lambda maps, k: trained.heatmaps(maps, sound[pairs.partner[k]], method),
            "unconditioned": lambda maps, k: loc.unconditioned_map(maps)}, shifts, chunk=32,
            desc="two-source scenes, trained", progress=progress)
        if net is not None:
            duet_heat.update(_heatmaps(net, pairs.images, {
                "untrained": lambda maps, k: net.heatmaps(maps, net_sound[pairs.item[k]],
                                                          method)}, shifts, chunk=32,
                desc="two-source scenes, untrained", progress=progress))
    cious = {name: _cious(h, items.gt, size) for name, h in heat.items()}
    prior = loc.center_prior(size)
    cious["center_prior"] = np.array([loc.ciou(prior, g) for g in items.gt])
    order = [r for r in ("trained", f"trained_{other}", "trained_other_sound", "untrained",
                         "unconditioned", "center_prior") if r in cious]
    result: Dict = {
        "export_dir": export_dir, "data_pattern": data_pattern, "media_dir": media_dir,
        "boxes": boxes_path,
        "preset": preset.name, "method": method, "shifts": shifts, "view": view, "gt": gt,
        "frames_per_video": frames_per_video, "num_items": len(items),
        "num_videos": len(set(items.video_ids)), "skipped": items.skipped, "seed": seed,
        "protocol": "EZ-VSL: min-max normalised map, pixels >= its median, cIoU; "
                    "cIoU@0.5 = share of items with cIoU >= 0.5; AUC over t = 0.05 i, i = 0..20",
        "rows": {r: loc.summarize(cious[r]) for r in order},
        "by_case": {case: {r: loc.summarize(cious[r][idx]) for r in order}
                    for case, idx in ldata.case_index(items.cases).items()},
        "items": [{"video_id": v, "time": round(float(t), 4), "label": lab, "cases": list(cs),
                   "cIoU": {r: round(float(cious[r][i]), 4) for r in order}}
                  for i, (v, t, lab, cs) in enumerate(zip(items.video_ids, items.times,
                                                          items.labels, items.cases))],
    }
    if pairs is not None:
        scored = duet_lib.score_duets(pairs, duet_heat)
        result["duet"] = {
            "num_items": len(pairs), "protocol": duet_lib.PROTOCOL,
            "rows": scored["rows"], "rows_box": scored["rows_box"],
            "items": [{"video_id": items.video_ids[i], "time": round(float(items.times[i]), 4),
                       "partner_video_id": items.video_ids[j],
                       "partner_time": round(float(items.times[j]), 4), "left": bool(lf),
                       "cIoU": {r: round(float(c[k]), 4) for r, c in scored["cious"].items()}}
                      for k, (i, j, lf) in enumerate(zip(pairs.item, pairs.partner, pairs.left))]}
    if output_dir is not None:
        os.makedirs(output_dir, exist_ok=True)
        if figure_items and pairs is not None:
            result["duet"]["figure"] = _duet_figure(output_dir, items, pairs, duet_heat,
                                                    scored["cious"], figure_items)
        if figure_items:
            chosen = _figure_items(items.cases, items.labels, figure_items)
            columns = {"trained": "trained: own sound", "trained_other_sound": "trained: other sound",
                       "untrained": "untrained", "unconditioned": "unconditioned map"}
            columns = {k: v for k, v in columns.items() if k in heat}
            result["figure"] = os.path.relpath(figures.localization_figure(
                os.path.join(output_dir, FIGURE), items.display[chosen],
                {label: np.stack([loc.upsample(heat[k][i], size) for i in chosen])
                 for k, label in columns.items()},
                [items.boxes[i] for i in chosen], [items.distractor_boxes[i] for i in chosen],
                [f"{items.labels[i]} {items.times[i]:.1f}s" + _case_note(items.cases[i])
                 for i in chosen],
                {label: [cious[k][i] for i in chosen] for k, label in columns.items()}), output_dir)
        result["seconds"] = round(time.time() - start, 1)
        fileio.write_json(os.path.join(output_dir, RESULTS_JSON), result)
    else:
        result["seconds"] = round(time.time() - start, 1)
    return result


def _duet_figure(output_dir: str, items, pairs, heat, cious, count: int) -> str:
    """localization_duet.png: the first duet of each label (then the next ones), columns
    own sound, the partner's sound, untrained, unconditioned; path relative to output_dir."""
    labels = [items.labels[i] for i in pairs.item]
    chosen = _first_of_each_label(list(range(len(pairs))), labels)[:count]
    size = pairs.gt.shape[1:]
    columns = {"trained": "trained: own sound", "trained_partner_sound": "trained: other's sound",
               "untrained": "untrained", "unconditioned": "unconditioned map"}
    columns = {k: v for k, v in columns.items() if k in heat}
    path = figures.localization_figure(
        os.path.join(output_dir, DUET_FIGURE), pairs.display[chosen],
        {label: np.stack([loc.upsample(heat[k][i], size) for i in chosen])
         for k, label in columns.items()},
        [pairs.boxes[i] for i in chosen], [pairs.partner_boxes[i] for i in chosen],
        [f"{labels[i]} {items.times[pairs.item[i]]:.1f}s\n({'left' if pairs.left[i] else 'right'}"
         f" sounds)" for i in chosen],
        {label: [cious[k][i] for i in chosen] for k, label in columns.items()},
        heading="Which of two frames sounds: the sound of one (green box), another label's "
                "frame beside it (dashed: its silent object); cIoU against the sounding frame")
    return os.path.relpath(path, output_dir)


def _case_note(cases) -> str:
    shown = [c.replace("_", " ") for c in cases if c != "clean"]
    return f"\n({', '.join(shown)})" if shown else ""


def _figure_items(cases, labels, count: int):
    """Items for the figure (at most `count`): clean ones of as many different labels as
    fit, then the first item of each other case (up to half the rows); rows left over
    (too few clean items: on the scene split every frame has a bystander) go to the
    first not yet chosen item of each label, then to the next ones."""
    others = [next((i for i, cs in enumerate(cases) if c in cs), None) for c in ldata.CASES[1:]]
    others = list(dict.fromkeys(i for i in others if i is not None))[:max(count // 2, 1)]
    clean = [i for i, cs in enumerate(cases) if i not in others and ("clean" in cs or not cs)]
    chosen = _first_of_each_label(clean, labels)[:count - len(others)] + others
    left = [i for i in range(len(cases)) if i not in chosen]
    return sorted(chosen + _first_of_each_label(left, labels)[:max(count - len(chosen), 0)])


def _first_of_each_label(indices, labels):
    """`indices` reordered: the first of each label (in order), then the rest in order."""
    first = list({labels[i]: i for i in reversed(indices)}.values())[::-1]
    return first + [i for i in indices if i not in first]


def format_table(result: Dict) -> str:
    """Plain-text table: each row's cIoU@0.5, AUC, mean cIoU; then by case (cIoU@0.5 / AUC)."""
    lines = [f"sound-source localization on {result['num_items']} annotated frames of "
             f"{result['num_videos']} videos ({result['method']}, {result.get('shifts', 1)}x finer "
             f"conv4_2, view {result['view']}, "
             f"gt {result['gt']}; EZ-VSL protocol)",
             f"  {'':24s}{'cIoU@0.5':>10s}{'AUC':>8s}{'mean cIoU':>11s}"]
    for row, m in result["rows"].items():
        lines.append(f"  {row:24s}{m['cIoU@0.5']:10.3f}{m['AUC']:8.3f}{m['mean_cIoU']:11.3f}")
    if result.get("by_case"):
        cases = list(result["by_case"])
        lines.append("")
        lines.append("  cIoU@0.5 / AUC by case (items): " + ", ".join(
            f"{c} ({next(iter(result['by_case'][c].values()))['n']})" for c in cases))
        lines.append(f"  {'':24s}" + "".join(f"{c[:16]:>18s}" for c in cases))
        for row in result["rows"]:
            lines.append(f"  {row:24s}" + "".join(
                f"{result['by_case'][c][row]['cIoU@0.5']:>10.3f} /{result['by_case'][c][row]['AUC']:5.2f}"
                for c in cases))
    if result.get("duet"):
        d = result["duet"]
        lines.append("")
        lines.append(f"  two-source scenes: {d['num_items']} frames, each beside a frame of "
                     "another label, the sound of one; truth: the sounding frame (its box: AUC)")
        lines.append(f"  {'':24s}{'cIoU@0.5':>10s}{'AUC':>8s}{'mean cIoU':>11s}{'box AUC':>9s}")
        for row, m in d["rows"].items():
            lines.append(f"  {row:24s}{m['cIoU@0.5']:10.3f}{m['AUC']:8.3f}{m['mean_cIoU']:11.3f}"
                         f"{d['rows_box'][row]['AUC']:9.3f}")
    return "\n".join(lines)
