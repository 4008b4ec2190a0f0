"""`analyze`: every analysis of section 3.5 on an exported model, as one library call.

    results = analyze("demo_work/export", "demo_work/tfrecords/test-*.tfrecord", "out")

reads labelled held-out items (`data.load_items`), embeds them with the
exported (trained) encoders and with an untrained network of the same
architecture, and runs the analyses named in `analyses`:

  nmi        Table 4: k-means (64 clusters) NMI vs classes; trained, untrained,
             random assignment                                  -> results["nmi"]
  units      3.5.3: classes with a unit preferring them at 4 / 3 of its top 5
                                                      -> results["unit_preference"]
  figures    top-k frame grids and conv4_2 heatmaps of the most class-selective
             units (Figures 3, 4, 7, 9), and a summary bar chart beside the paper
  tsne       Figure 10: t-SNE of both embeddings, trained vs untrained
  projector  TensorBoard projector files under output_dir/projector
  retrieval  image -> audio and audio -> image retrieval (`l3.eval.retrieval`): R@K,
             median rank, class P@K and mAP; trained, untrained, chance
                                                            -> results["retrieval"]
  localization  sound-source localization against the boxes in `boxes`
             (`l3.eval.localization_run`): cIoU@0.5 and AUC, trained, untrained,
             unconditioned map, centre prior, on single frames and on two-source
             scenes (`l3.eval.localization_duet`); output_dir/localization.png and
             localization_duet.png                       -> results["localization"]

With `analyses=None` every analysis runs, localization only when `boxes` is given.
It writes PNGs and `analysis.json` (the returned dict) under `output_dir`.
`format_table(results)` renders the numbers beside the paper's.
"""

import logging
import os
import time
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from l3.core import constants as C
from l3.core import errors, fileio
from l3.eval import localization_run, retrieval
from l3.eval.analysis import clustering, data, encoders, figures, projector, units

ANALYSES = ("nmi", "units", "figures", "tsne", "projector", "retrieval", "localization")
NETWORKS = ("trained", "untrained")
RESULTS_JSON = "analysis.json"
FIGURE_FILES = {
    "vision_units": "vision_units.png",
    "vision_heatmaps": "vision_heatmaps.png",
    "audio_units": "audio_units.png",
    "audio_heatmaps": "audio_heatmaps.png",
    "tsne": "tsne.png",
    "summary": "summary.png",
}


def _parse_analyses(analyses) -> Sequence[str]:
    if isinstance(analyses, str):
        analyses = [a.strip() for a in analyses.split(",") if a.strip()]
    unknown = sorted(set(analyses) - set(ANALYSES))
    if unknown:
        raise ValueError(f"unknown analyses {unknown}; choose from {list(ANALYSES)}")
    return [a for a in ANALYSES if a in analyses]


def _inputs(items: data.Items, modality: str) -> np.ndarray:
    return items.images if modality == "vision" else items.waveforms


def _unit_figures(out: Dict, output_dir: str, items: data.Items, probe: encoders.Probe,
                  acts: np.ndarray, pref: units.UnitPreference, modality: str,
                  num_units: int, stride: int, preset) -> Dict:
    """Grid + heatmaps for the most selective units of one modality; returns their summary."""
    chosen = units.most_selective_units(acts, pref, num_units)
    names = items.class_names
    common = dict(units=chosen, top_items=pref.top_items, labels=items.labels, class_names=names,
                  majority_class=pref.majority_class, majority_count=pref.majority_count)
    out[f"{modality}_units"] = figures.unit_grid(
        os.path.join(output_dir, FIGURE_FILES[f"{modality}_units"]), items.images,
        modality=modality, **common)
    if chosen:
        idx = pref.top_items[chosen]  # [rows, k]
        maps = probe.maps(_inputs(items, modality)[idx.ravel()])
        conv = maps["conv4_2"]
        channel = conv[np.arange(len(conv)), :, :, np.repeat(chosen, idx.shape[1])]
        channel = channel.reshape(idx.shape + channel.shape[1:])  # [rows, k, h, w]
        path = os.path.join(output_dir, FIGURE_FILES[f"{modality}_heatmaps"])
        if modality == "vision":
            out["vision_heatmaps"] = figures.vision_heatmaps(
                path, items.images[idx], channel, stride=stride, **common)
        else:
            spec = maps["spectrogram"][..., 0].reshape(idx.shape + maps["spectrogram"].shape[1:3])
            out["audio_heatmaps"] = figures.audio_heatmaps(
                path, spec, channel, stride=stride, preset=preset, **common)
    return [{"unit": int(u), "class": names[pref.majority_class[u]],
             "count": int(pref.majority_count[u]),
             "top_items": [{"video_id": items.video_ids[i], "time": float(items.times[i]),
                            "class": names[items.labels[i]]} for i in pref.top_items[u]]}
            for u in chosen]


def analyze(export_dir: str, data_pattern: str, output_dir: str, *,
            analyses=None, num_items: Optional[int] = 2000, clusters: int = C.KMEANS_CLUSTERS,
            seed: int = 0, items_per_video: int = 1, top_k: int = C.UNIT_TOP_K,
            num_figure_units: int = 6, batch_size: int = 32, boxes: Optional[str] = None,
            retrieval_items_per_video: int = 1, localization_frames_per_video: int = 1,
            log: Callable[[str], None] = logging.info) -> Dict:
    """Runs the analyses on the export at `export_dir`; writes figures and analysis.json.

    Args:
      export_dir: an `l3-export` directory (export.json + .keras encoders).
      data_pattern: glob of labelled TFRecord shards of held-out videos.
      output_dir: created if needed; gets the PNGs, analysis.json, projector/.
      analyses: names from ANALYSES (a list or a comma-separated string); None: all of
        them, localization only with `boxes`.
      num_items: cap on items read (None: all); clusters: k of k-means (capped at
        the number of items); seed: k-means, t-SNE, tie-breaking, the untrained
        network's initialisation; items_per_video: frames (each with its 1 s of
        audio) per video; top_k: items ranked per unit (paper: 5);
        num_figure_units: rows of the unit figures; batch_size: inference batch.
      boxes: an l3-boxes or VGG-SS file (`l3.eval.localization_io`) for localization;
        retrieval_items_per_video, localization_frames_per_video: their items per video
        (retrieval reads up to `num_items` items, unlabelled videos too).
    Returns: the dict written to analysis.json (layout in the docstring of l3.bin.analyze).
    """
    if analyses is None:
        analyses = [a for a in ANALYSES if a != "localization" or boxes is not None]
    analyses = _parse_analyses(analyses)
    if "localization" in analyses and boxes is None:
        raise errors.UsageError("the localization analysis needs a box file (boxes / --boxes)")
    os.makedirs(output_dir, exist_ok=True)
    timings: Dict[str, float] = {}
    t0 = time.time()
    preset = encoders.export_preset(export_dir)
    items = data.load_items(data_pattern, preset, max_items=num_items,
                            items_per_video=items_per_video)
    timings["load_items"] = time.time() - t0
    log(f"{len(items)} items from {len(set(items.video_ids))} videos, "
        f"{len(items.class_names)} classes, preset {preset.name}")
    if "nmi" in analyses and clustering.small_sample_warning(len(items), clusters):
        log("warning: " + clustering.small_sample_warning(len(items), clusters))

    results: Dict = {
        "export_dir": os.path.abspath(export_dir),
        "data_pattern": data_pattern,
        "preset": preset.name,
        "seed": int(seed),
        "analyses": list(analyses),
        "data": {"num_items": len(items), "num_videos": len(set(items.video_ids)),
                 "num_classes": len(items.class_names), "items_per_video": items_per_video,
                 "class_counts": items.class_counts(), "bad_frames": items.bad_frames},
        "paper": {"nmi": {m: clustering.paper_nmi(m) for m in encoders.MODALITIES},
                  "unit_preference": {m: units.paper_units(m) for m in encoders.MODALITIES},
                  "num_classes": 34},
        "figures": {},
    }

    t = time.time()
    probes = {"trained": encoders.trained_probes(export_dir, batch_size)}
    need_untrained = bool({"nmi", "units", "tsne", "projector"} & set(analyses))
    if need_untrained:
        probes["untrained"] = encoders.untrained_probes(preset, seed, batch_size)
    emb = {m: {net: probes[net][m].embed(_inputs(items, m)) for net in probes}
           for m in encoders.MODALITIES}
    timings["embed"] = time.time() - t

    if "nmi" in analyses:
        t = time.time()
        results["nmi"] = clustering.nmi_report(emb, items.labels, clusters, seed)
        timings["nmi"] = time.time() - t

    prefs = {}
    if {"units", "figures"} & set(analyses):
        t = time.time()
        section: Dict = {"top_k": top_k, "thresholds": list(C.UNIT_PREFERENCE_THRESHOLDS)}
        for m in encoders.MODALITIES:
            prefs[m] = {net: units.unit_preferences(emb[m][net], items.labels, top_k, seed,
                                                    groups=items.video_ids)
                        for net in emb[m]}
            section[m] = {net: units.preference_report(p, items.class_names)
                          for net, p in prefs[m].items()}
            section[m]["chance"] = units.chance_report(emb[m]["trained"], items.labels, top_k,
                                                       seed=seed, groups=items.video_ids)
        results["unit_preference"] = section
        timings["units"] = time.time() - t

    if "figures" in analyses:
        t = time.time()
        stride = encoders.total_stride(preset)
        results["selected_units"] = {
            m: _unit_figures(results["figures"], output_dir, items, probes["trained"][m],
                             emb[m]["trained"], prefs[m]["trained"], m, num_figure_units,
                             stride, preset)
            for m in encoders.MODALITIES}
        timings["figures"] = time.time() - t

    if "tsne" in analyses:
        t = time.time()
        pts = {m: {net: figures.tsne_2d(emb[m][net], seed) for net in emb[m]}
               for m in encoders.MODALITIES}
        results["figures"]["tsne"] = figures.tsne_figure(
            os.path.join(output_dir, FIGURE_FILES["tsne"]), pts, items.labels, items.class_names,
            extra=f"{len(items)} items, {len(items.class_names)} classes")
        timings["tsne"] = time.time() - t

    if "projector" in analyses:
        t = time.time()
        tensors = {f"{m}_{net}": emb[m][net] for m in encoders.MODALITIES for net in emb[m]}
        meta = {"class": items.label_names, "video_id": items.video_ids,
                "time_s": [f"{x:.2f}" for x in items.times]}
        files = projector.export_projector(os.path.join(output_dir, "projector"), tensors, meta,
                                           items.images)
        results["projector"] = {k: os.path.relpath(v, output_dir) if v else ""
                                for k, v in files.items()}
        timings["projector"] = time.time() - t

    if "retrieval" in analyses:
        t = time.time()
        results["retrieval"] = retrieval.evaluate_retrieval(
            export_dir, data_pattern, max_items=num_items,
            items_per_video=retrieval_items_per_video, seed=seed, batch_size=batch_size)
        timings["retrieval"] = time.time() - t

    if "localization" in analyses:
        t = time.time()
        results["localization"] = localization_run.evaluate_localization(
            export_dir, data_pattern, boxes, output_dir,
            frames_per_video=localization_frames_per_video, seed=seed, batch_size=batch_size)
        if results["localization"].get("figure"):
            results["figures"]["localization"] = os.path.join(output_dir,
                                                              results["localization"]["figure"])
        if (results["localization"].get("duet") or {}).get("figure"):
            results["figures"]["localization_duet"] = os.path.join(
                output_dir, results["localization"]["duet"]["figure"])
        timings["localization"] = time.time() - t

    if "nmi" in results or "unit_preference" in results:
        results["figures"]["summary"] = figures.summary_figure(
            os.path.join(output_dir, FIGURE_FILES["summary"]), results.get("nmi"),
            results.get("unit_preference"), results["paper"]["nmi"],
            results["paper"]["unit_preference"], len(items.class_names))

    results["figures"] = {k: os.path.relpath(v, output_dir) for k, v in results["figures"].items()}
    timings["total"] = time.time() - t0
    results["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    fileio.write_json(os.path.join(output_dir, RESULTS_JSON), results)
    return results


def format_table(results: Dict, sections: Sequence[str] = ("nmi", "units", "retrieval",
                                                          "localization", "figures")) -> str:
    """Our numbers beside the paper's (Table 4 and section 3.5.3), as plain text, then
    retrieval and localization (beyond the paper).

    `sections`: which of "nmi", "units", "retrieval", "localization", "figures" (the list
    of files) to include.
    """
    lines = []
    d = results.get("data", {})
    lines.append(f"{d.get('num_items')} items, {d.get('num_classes')} classes "
                 f"(paper: Kinetics-Sounds test set, 34 classes)")
    if "nmi" in results and "nmi" in sections:
        nmi, paper = results["nmi"], results["paper"]["nmi"]
        lines.append("")
        lines.append(f"Table 4: NMI of k-means clusters (k = {nmi['num_clusters']}) "
                     "with the classes")
        lines.append(f"  {'':34s}{'vision':>8s}{'paper':>8s}{'audio':>8s}{'paper':>8s}")
        for key, name in (("random_assignment", "random assignment"),
                          ("untrained", "L3-Net without training"),
                          ("trained", "L3-Net (AVC trained)")):
            lines.append(f"  {name:34s}{nmi['vision'][key]:8.3f}{paper['vision'][key]:8.3f}"
                         f"{nmi['audio'][key]:8.3f}{paper['audio'][key]:8.3f}")
        if nmi.get("warning"):
            lines.append(f"  warning: {nmi['warning']}")
    if "unit_preference" in results and "units" in sections:
        up, paper = results["unit_preference"], results["paper"]["unit_preference"]
        k = up["top_k"]
        lines.append("")
        lines.append(f"3.5.3: classes with a high-preference pool4 unit "
                     f"(ours of {d.get('num_classes')}, paper of 34)")
        lines.append(f"  {'':34s}{'vision':>8s}{'paper':>8s}{'audio':>8s}{'paper':>8s}")
        for t in up["thresholds"]:
            key = f"top{k}_{t}"
            for net in ("trained", "untrained", "chance"):
                v, a = up["vision"][net][key], up["audio"][net][key]
                pv = paper["vision"].get(net, {}).get(key)
                pa = paper["audio"].get(net, {}).get(key)
                fmt = (lambda x: f"{x:8.1f}") if net == "chance" else (lambda x: f"{x:8d}")
                pfmt = lambda x: f"{'-':>8s}" if x is None else f"{x:8d}"  # noqa: E731
                name = {"trained": "trained", "untrained": "untrained",
                        "chance": "chance (shuffled labels)"}[net]
                lines.append(f"  {f'{t} of top {k}, {name}':34s}{fmt(v)}{pfmt(pv)}"
                             f"{fmt(a)}{pfmt(pa)}")
    if "retrieval" in results and "retrieval" in sections:
        lines += ["", retrieval.format_table(results["retrieval"])]
    if "localization" in results and "localization" in sections:
        lines += ["", localization_run.format_table(results["localization"])]
    if results.get("figures") and "figures" in sections:
        lines.append("")
        lines.append("figures: " + ", ".join(sorted(results["figures"].values())))
    return "\n".join(lines)
