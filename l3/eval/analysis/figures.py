"""Figures of section 3.5, drawn with matplotlib (Agg backend: no display needed).

* `unit_grid`: for each chosen pool4 unit, its top-k held-out items (Figures 3
  and 7): the frames themselves for vision units; for audio units, the frame of
  the video each top audio clip comes from ("for visualization purposes,
  instead of showing the sound form, we display the video frame that
  corresponds to the sound", 3.5.2).
* `vision_heatmaps` / `audio_heatmaps` (Figures 4 and 9): channel k of conv4_2
  (after ReLU), the map whose spatial max is unit k, upsampled by the network's
  total stride and overlaid on the frame / the log-spectrogram. The overlay's
  opacity grows with the activation, normalised per unit (row) so that a row
  compares its items.
* `tsne_figure` (Figure 10): t-SNE of both embeddings, trained beside untrained,
  coloured by class.
* `summary_figure`: our NMI and unit-preference counts beside the paper's.

Every function writes one PNG and returns its path.
"""

import os
from typing import Dict, List, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402
from sklearn import decomposition, manifold  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from l3.core.presets import Preset  # noqa: E402

_MATCH, _MISMATCH = "#1a7f37", "#cf222e"  # green: item of the unit's class; red: not
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def _short(name: str, width: int = 22) -> str:
    return name if len(name) <= width else name[:width - 1] + "…"


def upsample_map(channel: np.ndarray, stride: int) -> np.ndarray:
    """Bilinear upsampling of a conv4_2 channel [h, w] -> [h * stride, w * stride].

    Cell (i, j) covers input pixels [i * stride, (i + 1) * stride) (pixel-area
    alignment, `grid_mode`), which is what the strided trunk sees.
    """
    return ndimage.zoom(np.asarray(channel, np.float64), stride, order=1, mode="nearest",
                        grid_mode=True)


def _overlay_rgba(heat: np.ndarray, vmax: float, cmap: str = "jet", max_alpha: float = 0.75):
    """RGBA image of `heat` whose opacity follows its value (0 -> transparent)."""
    norm = np.clip(heat / vmax, 0.0, 1.0) if vmax > 0 else np.zeros_like(heat)
    rgba = plt.get_cmap(cmap)(norm)
    rgba[..., 3] = max_alpha * norm
    return rgba


def _row_label(ax, unit: int, class_name: str, count: int, k: int):
    ax.set_ylabel(f"unit {unit}\n{_short(class_name)}\n{count}/{k} of top {k}", rotation=0,
                  ha="right", va="center", fontsize=9, labelpad=8)


def _frame_title(ax, name: str, match: bool, extra: str = ""):
    ax.set_title(_short(name) + extra, fontsize=8, color=_MATCH if match else _MISMATCH)


def _clean(ax):
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def unit_grid(path: str, images: np.ndarray, units: Sequence[int], top_items: np.ndarray,
              labels: np.ndarray, class_names: Sequence[str], majority_class: np.ndarray,
              majority_count: np.ndarray, *, modality: str, network: str = "trained") -> str:
    """Rows: units; columns: each unit's top-k items, shown as frames.

    Args:
      images: float [n, S, S, 3] in [0, 1], one frame per item.
      top_items: int [D, k] (from `units.unit_preferences`).
      labels: int [n]; majority_class / majority_count: int [D].
    """
    k = top_items.shape[1]
    rows = max(len(units), 1)
    fig, axes = plt.subplots(rows, k, figsize=(1.9 * k + 1.6, 2.15 * rows + 0.8), squeeze=False,
                             layout="constrained")
    for r, u in enumerate(units):
        for c, item in enumerate(top_items[u]):
            ax = axes[r, c]
            ax.imshow(np.clip(images[item], 0, 1), interpolation="bilinear")
            _clean(ax)
            _frame_title(ax, class_names[labels[item]], labels[item] == majority_class[u],
                         f"\n#{c + 1}")
        _row_label(axes[r, 0], u, class_names[majority_class[u]], majority_count[u], k)
    if not len(units):
        axes[0, 0].text(0.5, 0.5, "no live units", ha="center", va="center")
    what = ("frames ranked by the unit's pool4 activation" if modality == "vision" else
            "frames of the videos whose 1 s audio clips rank highest")
    fig.suptitle(f"{modality.capitalize()} units ({network} network): top {k} held-out {what}\n"
                 f"title = the item's class (green: the unit's majority class, red: another)",
                 fontsize=10)
    return _save(fig, path)


def vision_heatmaps(path: str, images: np.ndarray, maps: np.ndarray, units: Sequence[int],
                    top_items: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                    majority_class: np.ndarray, majority_count: np.ndarray, stride: int) -> str:
    """Frames with the unit's conv4_2 channel overlaid.

    Args:
      images: float [rows, k, S, S, 3], the top-k frames of each unit.
      maps: float [rows, k, h, w], channel `units[r]` of conv4_2 for those frames.
      top_items, labels, ...: as in `unit_grid` (for titles).
      stride: input pixels per conv4_2 cell (`encoders.total_stride`).
    """
    rows, k = maps.shape[:2]
    fig, axes = plt.subplots(rows, k, figsize=(1.9 * k + 1.6, 2.15 * rows + 0.8), squeeze=False,
                             layout="constrained")
    for r, u in enumerate(units):
        vmax = float(maps[r].max())
        for c in range(k):
            ax = axes[r, c]
            img = np.clip(images[r, c], 0, 1)
            heat = upsample_map(maps[r, c], stride)
            ax.imshow(img.mean(axis=-1), cmap="gray", vmin=0, vmax=1, interpolation="bilinear")
            ax.imshow(_overlay_rgba(heat, vmax), extent=(0, heat.shape[1], heat.shape[0], 0),
                      interpolation="bilinear")
            ax.set_xlim(0, img.shape[1])
            ax.set_ylim(img.shape[0], 0)
            _clean(ax)
            item = top_items[u, c]
            _frame_title(ax, class_names[labels[item]], labels[item] == majority_class[u],
                         f"\n#{c + 1}, max {maps[r, c].max():.2g}")
        _row_label(axes[r, 0], u, class_names[majority_class[u]], majority_count[u], k)
    fig.suptitle("Vision heatmaps: conv4_2 channel of each unit (after ReLU) over its top frames\n"
                 "colour and opacity = activation, scaled to the row's maximum "
                 "(blue low, red high)",
                 fontsize=10)
    return _save(fig, path)


def audio_heatmaps(path: str, spectrograms: np.ndarray, maps: np.ndarray, units: Sequence[int],
                   top_items: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                   majority_class: np.ndarray, majority_count: np.ndarray, stride: int,
                   preset: Preset) -> str:
    """Log-spectrograms of the top audio clips with the unit's conv4_2 channel overlaid.

    Args:
      spectrograms: float [rows, k, bands, frames] (the network's input image;
        band 0 = 0 Hz, drawn at the bottom).
      maps: float [rows, k, h, w], channel `units[r]` of conv4_2.
    """
    rows, k = maps.shape[:2]
    bands, frames = spectrograms.shape[2:]
    sec_per_frame = preset.stft_hop / preset.sample_rate
    khz_per_band = preset.sample_rate / preset.fft_length / 1000.0
    extent = (0, frames * sec_per_frame, 0, bands * khz_per_band)
    fig, axes = plt.subplots(rows, k, figsize=(2.2 * k + 1.8, 2.15 * rows + 1.0), squeeze=False,
                             layout="constrained")
    for r, u in enumerate(units):
        vmax = float(maps[r].max())
        lo, hi = np.percentile(spectrograms[r], [5, 99.5])
        for c in range(k):
            ax = axes[r, c]
            ax.imshow(spectrograms[r, c], origin="lower", aspect="auto", cmap="gray",
                      vmin=lo, vmax=hi, extent=extent, interpolation="nearest")
            heat = upsample_map(maps[r, c], stride)  # covers the bands/frames the trunk saw
            ax.imshow(_overlay_rgba(heat, vmax), origin="lower", aspect="auto",
                      extent=(0, heat.shape[1] * sec_per_frame, 0, heat.shape[0] * khz_per_band),
                      interpolation="bilinear")
            ax.set_xlim(extent[0], extent[1])
            ax.set_ylim(extent[2], extent[3])
            ax.tick_params(labelsize=7)
            if r != rows - 1:
                ax.set_xticklabels([])
            else:
                ax.set_xlabel("time (s)", fontsize=8)
            if c != 0:
                ax.set_yticklabels([])
            item = top_items[u, c]
            _frame_title(ax, class_names[labels[item]], labels[item] == majority_class[u],
                         f"\n#{c + 1}, max {maps[r, c].max():.2g}")
        _row_label(axes[r, 0], u, class_names[majority_class[u]], majority_count[u], k)
    fig.suptitle("Audio heatmaps: conv4_2 channel of each unit (after ReLU) over the "
                 "log-spectrograms of its top clips\n(x: time in s, y: frequency in kHz; colour "
                 "and opacity = activation, scaled to the row's maximum: blue low, red high)",
                 fontsize=10)
    return _save(fig, path)


def tsne_2d(embeddings: np.ndarray, seed: int = 0, perplexity: float = 30.0,
            threads: Optional[int] = 1) -> np.ndarray:
    """2-D t-SNE of [n, D] -> [n, 2]. PCA to 50 dimensions first (standard practice for
    speed); perplexity capped below n / 3 so that small sets work.

    `threads` caps BLAS/OpenMP threads (None: library default): on a busy machine
    their spin-waiting made t-SNE of 340 points take 60 s instead of 3.5 s."""
    x = np.asarray(embeddings, np.float64)
    n = len(x)
    if n < 3:
        return np.zeros((n, 2)) if n == 1 else np.stack([np.arange(n), np.zeros(n)], 1)
    perplexity = float(min(perplexity, max(1.0, (n - 1) / 3)))
    with threadpool_limits(limits=threads):
        if x.shape[1] > 50 and n > 50:
            x = decomposition.PCA(50, random_state=seed).fit_transform(x)
        return manifold.TSNE(2, perplexity=perplexity, init="pca", random_state=seed,
                             learning_rate="auto").fit_transform(x)


def class_styles(num_classes: int) -> List[dict]:
    """A (colour, marker) per class, distinguishable up to dozens of classes."""
    if num_classes <= 10:
        colours = plt.get_cmap("tab10").colors
    else:
        colours = plt.get_cmap("tab20").colors + plt.get_cmap("tab20b").colors
    return [{"color": colours[i % len(colours)], "marker": _MARKERS[(i // 10) % len(_MARKERS)]}
            for i in range(num_classes)]


def tsne_figure(path: str, points: Dict[str, Dict[str, np.ndarray]], labels: np.ndarray,
                class_names: Sequence[str], extra: Optional[str] = None) -> str:
    """Figure 10: rows = modalities, columns = networks ("trained", "untrained").

    Args:
      points: {modality: {network: [n, 2] t-SNE coordinates}}.
    """
    modalities = list(points)
    nets = list(points[modalities[0]])
    styles = class_styles(len(class_names))
    size = 40 if len(labels) < 300 else 14
    fig, axes = plt.subplots(len(modalities), len(nets),
                             figsize=(4.6 * len(nets) + 2.8, 4.3 * len(modalities)), squeeze=False,
                             layout="constrained")
    for r, m in enumerate(modalities):
        for c, net in enumerate(nets):
            ax = axes[r, c]
            xy = points[m][net]
            for ci, name in enumerate(class_names):
                sel = labels == ci
                if sel.any():
                    ax.scatter(xy[sel, 0], xy[sel, 1], s=size, alpha=0.8, linewidths=0.3,
                               edgecolors="white", label=name, **styles[ci])
            ax.set_title(f"{m.capitalize()}, {net}", fontsize=11)
            _clean(ax)
            for s in ax.spines.values():
                s.set_visible(True)
                s.set_color("#bbbbbb")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right center", fontsize=8,
               title="class", markerscale=1.6, frameon=False,
               ncol=1 if len(class_names) <= 24 else 2)
    title = "t-SNE of the pool4 embeddings of held-out items, coloured by class"
    fig.suptitle(title + (f"\n{extra}" if extra else ""), fontsize=11)
    return _save(fig, path)


def summary_figure(path: str, nmi: Optional[Dict], units: Optional[Dict],
                   paper_nmi: Dict[str, Dict[str, float]],
                   paper_units: Dict[str, Dict[str, Dict[str, int]]], num_classes: int,
                   paper_classes: int = 34) -> str:
    """Bar charts, ours beside the paper's: Table 4 (NMI) and 3.5.3 (the fraction of
    classes with a high-preference unit; the bars are labelled with the counts, ours
    of `num_classes`, the paper's of 34)."""
    panels = [p for p in (("nmi", nmi), ("units", units)) if p[1]]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(6.4 * max(len(panels), 1), 4.4),
                             squeeze=False, layout="constrained")
    width = 0.2
    for ax, (kind, res) in zip(axes[0], panels):
        if kind == "nmi":
            groups = [("vision", "trained"), ("vision", "untrained"), ("audio", "trained"),
                      ("audio", "untrained"), ("vision", "random_assignment")]
            names = ["vision\ntrained", "vision\nuntrained", "audio\ntrained", "audio\nuntrained",
                     "random\nassignment"]
            ours = [res[m][n] for m, n in groups]
            paper = [paper_nmi[m][n] for m, n in groups]
            ours_text = [f"{v:.2f}" for v in ours]
            paper_text = [f"{v:.2f}" for v in paper]
            ax.set_title(f"Table 4: NMI of k-means clusters with the classes "
                         f"(k = {res['num_clusters']})", fontsize=10)
            ax.set_ylabel("NMI")
        else:
            keys = [f"top{res['top_k']}_{t}" for t in res["thresholds"]]
            groups = [(m, n, k) for k in keys for m in ("vision", "audio")
                      for n in ("trained", "untrained")]
            names = [f"{m}\n{n}\n{k.split('_')[1]} of {res['top_k']}" for m, n, k in groups]
            counts = [res[m][n][k] for m, n, k in groups]
            paper_counts = [paper_units[m][n].get(k, np.nan) for m, n, k in groups]
            ours = [c / max(num_classes, 1) for c in counts]
            paper = [c / paper_classes for c in paper_counts]
            ours_text = [str(c) for c in counts]
            paper_text = ["" if np.isnan(c) else str(int(c)) for c in paper_counts]
            ax.set_title(f"3.5.3: classes with a high-preference pool4 unit\n(bar labels: "
                         f"counts; ours of {num_classes} classes, paper of {paper_classes})",
                         fontsize=10)
            ax.set_ylabel("fraction of classes")
        x = np.arange(len(groups))
        bars = ax.bar(x - width, ours, 2 * width, label="ours", color="#0969da")
        ax.bar_label(bars, ours_text, fontsize=7, padding=1)
        bars = ax.bar(x + width, paper, 2 * width, label="paper", color="#bbbbbb")
        ax.bar_label(bars, paper_text, fontsize=7, padding=1, color="#555555")
        ax.set_xticks(x, names, fontsize=8)
        top = np.nanmax(np.concatenate([ours, paper]).astype(float))
        ax.set_ylim(0, 1.25 * top if top > 0 else 1.0)
        ax.legend(fontsize=8, loc="upper center", ncol=2)
        ax.grid(axis="y", alpha=0.3)
    if not panels:
        axes[0, 0].text(0.5, 0.5, "nothing to summarise", ha="center")
    return _save(fig, path)


def localization_figure(path: str, frames: np.ndarray, heatmaps: Dict[str, np.ndarray],
                        boxes: Sequence[np.ndarray], distractor_boxes: Sequence[np.ndarray],
                        row_titles: Sequence[str], cious: Dict[str, Sequence[float]],
                        heading: str = "Where the sound comes from: heatmaps on held-out "
                                       "frames (green: true box)") -> str:
    """Sound-source heatmaps on frames, the true boxes drawn.

    frames uint8 [n, H, W, 3]; heatmaps {column title: [n, H, W]} (any scale: each is
    min-max normalised, as the metric does); boxes / distractor_boxes per row [k, 4]
    normalised (green: the sounding object; dashed white: a silent distractor);
    cious {column title: [n]}. The white contour is the median rule's region (the
    pixels cIoU counts as predicted).
    """
    from matplotlib.patches import Rectangle  # noqa: PLC0415
    n, cols = len(frames), 1 + len(heatmaps)
    height, width = frames.shape[1:3]
    scale = np.array([width, height, width, height], np.float64)
    fig, axes = plt.subplots(n, cols, figsize=(2.1 * cols * width / height, 2.2 * n),
                             squeeze=False)

    def draw_boxes(ax):
        for (x1, y1, x2, y2) in np.asarray(boxes[r]).reshape(-1, 4) * scale:
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="#2da44e", lw=2))
        for (x1, y1, x2, y2) in np.asarray(distractor_boxes[r]).reshape(-1, 4) * scale:
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="white", lw=1.2,
                                   ls="--"))

    for r in range(n):
        ax = axes[r, 0]
        ax.imshow(frames[r])
        draw_boxes(ax)
        ax.set_ylabel(row_titles[r], rotation=0, ha="right", va="center", fontsize=8, labelpad=6)
        if r == 0:
            ax.set_title("frame, true box", fontsize=9)
        for c, (title, maps) in enumerate(heatmaps.items(), start=1):
            ax = axes[r, c]
            heat = np.asarray(maps[r], np.float64)
            lo, hi = heat.min(), heat.max()
            norm = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
            ax.imshow(frames[r])
            ax.imshow(norm, cmap="jet", alpha=0.45, vmin=0, vmax=1)
            median = np.sort(norm.ravel())[norm.size // 2]
            if 0 < median < 1:
                ax.contour(norm >= median, levels=[0.5], colors="white", linewidths=1)
            draw_boxes(ax)
            ax.set_title((f"{title}\n" if r == 0 else "") + f"cIoU {cious[title][r]:.2f}", fontsize=8)
        for ax in axes[r]:
            _clean(ax)
    fig.suptitle(heading, fontsize=10)
    return _save(fig, path)
