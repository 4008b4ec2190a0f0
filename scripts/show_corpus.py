"""Contact sheet of the bundled corpus: frames and a spectrogram per class.

    .venv/bin/python scripts/show_corpus.py --output corpus.png [--root DIR] [--per_class 2]

With `--root`, videos are decoded from a generated corpus (PyAV); without it,
they are rendered in memory from the default parameters (no files needed).
Each row is one video: three frames (start, middle, end) and the log
spectrogram of its first 2 s at 16 kHz (the small preset's front end:
0.01 s Hann window, half-window hop, 256-point FFT), 0-8 kHz upwards.
"""

import argparse
import json
import os
import sys

import av
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import soxr

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from l3.demo import corpus  # noqa: E402


def _log_spec(x, sr):
    x = soxr.resample(x.astype(np.float64), sr, 16000)[: 2 * 16000]
    win, hop = 160, 80
    frames = 1 + (len(x) - win) // hop
    idx = np.arange(frames)[:, None] * hop + np.arange(win)[None]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    return np.log(np.abs(np.fft.rfft(x[idx] * hann, 256)) + 1e-6).T


def _decode(path):
    with av.open(path) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(path) as c:
        chunks, sr = [], None
        for f in c.decode(audio=0):
            sr = f.sample_rate
            a = f.to_ndarray()
            chunks.append(a.mean(0) if a.ndim == 2 and f.format.is_planar else a.reshape(-1, len(f.layout.channels)).mean(1))
    return np.stack(frames), np.concatenate(chunks), sr


def _videos(root, per_class):
    if root:
        meta = json.load(open(os.path.join(root, "corpus.json")))
        rows = []
        for cls in meta["classes"]:
            vids = [v for v in meta["videos"] if v["label"] == cls["name"] and v["split"] == "train"]
            for v in vids[:per_class]:
                frames, audio, sr = _decode(os.path.join(root, v["path"]))
                rows.append((v, frames, audio, sr))
        return rows
    params = corpus.CorpusParams()
    rows = []
    for plan in corpus.plan_corpus(params):
        if plan.split == "train" and plan.index < per_class:
            frames, audio = corpus.render_video(plan)
            audio = audio.mean(-1) if audio.ndim == 2 else audio
            rows.append((plan.meta(), frames, audio, plan.sample_rate))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="corpus.png")
    ap.add_argument("--root", default=None, help="a generated corpus (default: render in memory)")
    ap.add_argument("--per_class", type=int, default=2)
    args = ap.parse_args()
    rows = _videos(args.root, args.per_class)
    fig, axes = plt.subplots(len(rows), 4, figsize=(11, 1.45 * len(rows)),
                             gridspec_kw={"width_ratios": [1, 1, 1, 1.8]})
    for r, (meta, frames, audio, sr) in enumerate(rows):
        for c, k in enumerate((0, len(frames) // 2, len(frames) - 1)):
            axes[r, c].imshow(frames[k])
            axes[r, c].set_axis_off()
        axes[r, 3].imshow(_log_spec(audio, sr), origin="lower", aspect="auto", cmap="magma",
                          extent=(0, 2, 0, 8))
        axes[r, 3].set_yticks([0, 4, 8])
        axes[r, 3].tick_params(labelsize=6)
        notes = [] if meta["sound_related"] else [f"unrelated: {meta['soundtrack']}"]
        notes += [o["kind"] for o in meta["offscreen"]] + (["gap"] if meta["silent_gaps"] else [])
        axes[r, 0].text(-8, 60, meta["label"], fontsize=7, ha="right", va="center")
        axes[r, 3].set_title(", ".join(notes), fontsize=6, loc="right", pad=2)
    axes[-1, 3].set_xlabel("s (spectrogram: kHz)", fontsize=7)
    fig.tight_layout(pad=0.3)
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output} ({len(rows)} videos)")


if __name__ == "__main__":
    main()
