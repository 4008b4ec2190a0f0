"""Sound-source localization: heatmaps conditioned on the sound, and the metrics cIoU and AUC.

Heatmaps, per (frame, sound) pair, on the vision conv4_2 map A [h, w, C] (after ReLU;
pool4, the embedding, is its global max v = max_xy A):

* `gradcam`: Grad-CAM (Selvaraju et al., ICCV 2017) of the correspondence
  log-odds y = l1 - l0 (the fusion's "corresponds" minus "does not" logit, the
  quantity P(corresponds) = sigmoid(y) ranks by): alpha_k = mean_xy dy/dA_k,
  map = sum_k alpha_k A_k. Through the global max, dy/dA_k reaches one cell per
  channel, so alpha_k = (dy/dv_k) / (h w), and dy/dv = W_v^T (dw * [W_v v + W_a a + b1 > 0])
  depends on the sound through which fusion units it switches on. Grad-CAM's final
  ReLU is left out (`relu=True` restores it): it is monotone, so it cannot change which
  half of the pixels ranks highest, except by tying every negative cell at 0; when
  more than half of a map is negative, the median rule below (pixels >= the median)
  would then select the whole frame.
* `fusion_map` (default): the fusion's log-odds with each cell's feature put in place of the
  pooled embedding, dw . relu(W_v A_xy + W_a a + b1) + db ("which cell, alone, would
  the network say this sound belongs to"). Without fc1's ReLU it would be Grad-CAM's
  map before its ReLU up to a constant; with it, each cell gets its own gating.
* baselines: `unconditioned_map`, the same network's sound-free activation map, the
  mean of A over channels (EZ-VSL's object-saliency map: the mean |feature| over
  channels); `center_prior`, a Gaussian at the frame centre (after the median
  threshold below: the central ellipse of half the frame).

**Dense maps** (`shift_and_stitch`, default `DENSE_SHIFTS` = 4 per axis): conv4_2 has a
stride of 16 input pixels (a 4 x 4 map for the small preset's 64 x 64 frames, 14 x 14
for the paper's 224), coarser than most objects. The network is run on the frame
shifted by every multiple of 16 / r pixels (r x r passes) and the maps interleaved,
as FCN's shift-and-stitch / OverFeat's dense evaluation do: a map r times finer at
the network's own scale (no resizing), each cell the features of a 16-pixel window
centred on its own place. Every map row (trained, other sound, untrained,
unconditioned) is made from the same dense features; Grad-CAM's alpha then comes from
the maximum over the dense cells (windows moved by at most 6 pixels). Measured on
the demo's export (400 frames, cIoU@0.5, plain -> dense; WORKSPACE_NOTES "Localization"):
fusion_map 0.128 -> 0.152, Grad-CAM 0.093 -> 0.048, the unconditioned map 0.130 ->
0.155: the default heatmap is `fusion_map` on dense features.

A map [h, w] is upsampled to the evaluation size (224) bilinearly with cell (i, j)
covering input pixels [i s, (i + 1) s) (`scipy.ndimage.zoom`, grid_mode; EZ-VSL's
align_corners=True would push a 4 x 4 map's cells outward by up to 28 of 224 pixels).

Metrics, as EZ-VSL's evaluation defines them (github.com/stoneMo/EZ-VSL, test.py and
utils.py; the same code in LVS/SLAVC/Mo & Morgado), for each item:

  pred   = min-max normalised map (EZ-VSL `normalize_img`; a constant map stays as is)
  thr    = sort(pred.flatten())[int(224 * 224 * 0.5)]       (the median value)
  P      = pred >= thr                                     (about half the pixels)
  cIoU   = sum(P * G) / (sum(G) + sum(P * (G == 0)))       (G: ground-truth map, `localization_io`)

and over the items: cIoU@0.5 = mean(cIoU >= 0.5) (EZ-VSL's "AP50"); AUC = the area,
by the trapezoidal rule, under the success rate mean(cIoU >= t) for t = 0.05 i,
i = 0..20 (`sklearn.metrics.auc`); mean cIoU. With P half the frame, cIoU is the IoU of
P and G (for G in {0, 1}), so cIoU >= 0.5 needs a ground truth of at least a quarter of
the frame.
"""

from typing import Dict, Sequence

import numpy as np
from scipy import ndimage

from l3.eval import localization_io

EVAL_SIZE = localization_io.EVAL_SIZE
CIOU_SUCCESS = 0.5
AUC_THRESHOLDS = tuple(0.05 * i for i in range(21))   # EZ-VSL: [0.05 * i for i in range(21)]
METHODS = ("fusion_map", "gradcam")   # the first is the default
DENSE_SHIFTS = 4                      # shifts per axis (module docstring)


# --- metrics ----------------------------------------------------------------------------

def normalize(heatmap: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (EZ-VSL's normalize_img); a constant map is returned unchanged."""
    m = np.asarray(heatmap, np.float64)
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else m


def binarize(pred: np.ndarray, fraction: float = 0.5) -> np.ndarray:
    """pred >= its value at index int(H W fraction) of the sorted map (EZ-VSL: the median)."""
    thr = np.sort(pred.ravel())[int(pred.shape[0] * pred.shape[1] * fraction)]
    return pred >= thr


def ciou(heatmap: np.ndarray, gt_map: np.ndarray) -> float:
    """Consensus IoU of one heatmap [E, E] against a ground-truth map [E, E] (module docstring)."""
    pred = binarize(normalize(heatmap)).astype(np.float64)
    gt = np.asarray(gt_map, np.float64)
    return float(np.sum(pred * gt) / (np.sum(gt) + np.sum(pred * (gt == 0))))


def summarize(cious: Sequence[float]) -> Dict[str, float]:
    """{"cIoU@0.5", "AUC", "mean_cIoU", "n"} of per-item cIoUs (module docstring)."""
    c = np.asarray(cious, np.float64)
    if not len(c):
        return {"cIoU@0.5": None, "AUC": None, "mean_cIoU": None, "n": 0}
    rates = [float(np.mean(c >= t)) for t in AUC_THRESHOLDS]
    return {"cIoU@0.5": float(np.mean(c >= CIOU_SUCCESS)),
            "AUC": float(np.trapezoid(rates, AUC_THRESHOLDS)),
            "mean_cIoU": float(np.mean(c)), "n": int(len(c))}


def upsample(heatmap: np.ndarray, size=EVAL_SIZE) -> np.ndarray:
    """[h, w] -> float64 [size, size] (or [H, W] for size = (H, W)), bilinear, cell (i, j)
    covering its share of the frame."""
    m = np.asarray(heatmap, np.float64)
    height, width = (size, size) if np.isscalar(size) else size
    return ndimage.zoom(m, (height / m.shape[0], width / m.shape[1]), order=1, mode="nearest",
                        grid_mode=True)


def center_prior(size: int = EVAL_SIZE, sigma: float = 0.25) -> np.ndarray:
    """A Gaussian at the centre, sigma a fraction of the side: float64 [size, size]."""
    c = (np.arange(size) + 0.5) / size - 0.5
    return np.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (2 * sigma ** 2))


# --- heatmaps ---------------------------------------------------------------------------

class Localizer:
    """Heatmaps of one AVC model (`l3.model.network.build_avc_model` or an export's avc.keras).

    Layers are read by their public names: the vision network's "conv4_2_relu" (whose
    global max is "pool4"), the fusion's "fc1" and "fc2".
    """

    def __init__(self, avc_model, batch_size: int = 32):
        import keras  # noqa: PLC0415 (TensorFlow only where heatmaps are made)
        from l3.eval import retrieval  # noqa: PLC0415
        from l3.model import network as model_lib  # noqa: PLC0415
        nets = model_lib.subnetworks(avc_model)
        vision = nets[model_lib.VISION]
        self._vision = vision
        self._trunks = {tuple(vision.input.shape[1:3]): _graph(
            keras.Model(vision.input, vision.get_layer("conv4_2_relu").output))}
        self._audio = _graph(nets[model_lib.AUDIO])
        self._fusion = nets["fusion"]
        self.parts = retrieval.fusion_parts(self._fusion)
        self.batch_size = batch_size

    def _batched(self, fn, *arrays) -> np.ndarray:
        n = len(arrays[0])
        return np.concatenate([np.asarray(fn(*(a[i:i + self.batch_size] for a in arrays)))
                               for i in range(0, n, self.batch_size)])

    def _trunk(self, height: int, width: int):
        """The vision network up to conv4_2_relu on [b, height, width, 3] inputs, as a graph
        (`_graph`): the network's own layers (its weights), applied in order to a new input
        of that size (the trunk is a chain of convolutions, batch norms, ReLUs and pools up
        to there)."""
        if (height, width) not in self._trunks:
            import keras  # noqa: PLC0415
            x = image = keras.Input((height, width, 3), name="image")
            for layer in self._vision.layers[1:]:
                x = layer(x)
                if layer.name == "conv4_2_relu":
                    break
            self._trunks[(height, width)] = _graph(keras.Model(image, x))
        return self._trunks[(height, width)]

    def conv_maps(self, images: np.ndarray) -> np.ndarray:
        """float32 [n, H, W, 3] in [0, 1] (the network's S x S, or any size: the trunk is
        convolutional up to conv4_2) -> conv4_2 after ReLU, float32 [n, h, w, C]."""
        images = np.asarray(images, np.float32)
        return self._batched(self._trunk(*images.shape[1:3]), images)

    def dense_maps(self, images: np.ndarray, shifts: int = DENSE_SHIFTS) -> np.ndarray:
        """conv4_2 after ReLU, `shifts` times finer (`shift_and_stitch`): float32
        [n, shifts h, shifts w, C]; `conv_maps` when shifts is 1."""
        return shift_and_stitch(np.asarray(images, np.float32), self.conv_maps, shifts)

    def audio_embeddings(self, waveforms: np.ndarray) -> np.ndarray:
        """float32 [n, N] -> pool4 embeddings [n, D]."""
        return self._batched(self._audio, np.asarray(waveforms, np.float32))

    def gradcam(self, maps: np.ndarray, audio: np.ndarray, relu: bool = False) -> np.ndarray:
        """Grad-CAM of y = l1 - l0 for pairs (maps[i], audio[i]): float32 [n, h, w]
        (before Grad-CAM's final ReLU unless `relu`; module docstring).

        The gradient in closed form from the fusion's weights (`fusion_parts`), no
        autodiff: y = relu(z) . dw + db with z = max_hw(maps) W_v + a W_a + b, so
        dy/dpool4 = W_v (dw * [z > 0]) ([C]); the global max sends it to each channel's
        maximum (ties share it), so its mean over the h w cells, Grad-CAM's alpha, is
        dy/dpool4 / (h w) whatever the ties; the map is maps . alpha.
        """
        p = self.parts
        maps = np.asarray(maps, np.float32)
        n, h, w, _ = maps.shape
        pooled = maps.reshape(n, h * w, -1).max(axis=1)                            # [n, C]
        z = pooled @ p.w_vision + np.asarray(audio, np.float32) @ p.w_audio + p.bias  # [n, H]
        alpha = ((z > 0) * p.delta_w) @ p.w_vision.T / (h * w)                      # [n, C]
        cam = np.einsum("nhwc,nc->nhw", maps, alpha).astype(np.float32)
        return np.maximum(cam, 0.0) if relu else cam

    def fusion_map(self, maps: np.ndarray, audio: np.ndarray) -> np.ndarray:
        """Per-cell fusion log-odds for pairs (maps[i], audio[i]): float32 [n, h, w]."""
        p = self.parts
        cells = np.asarray(maps, np.float32) @ p.w_vision + p.bias          # [n, h, w, H]
        sound = (np.asarray(audio, np.float32) @ p.w_audio)[:, None, None]  # [n, 1, 1, H]
        return np.maximum(cells + sound, 0.0) @ p.delta_w + p.delta_b

    def heatmaps(self, maps: np.ndarray, audio: np.ndarray, method: str = METHODS[0]) -> np.ndarray:
        if method == "gradcam":
            return self.gradcam(maps, audio)
        if method == "fusion_map":
            return self.fusion_map(maps, audio)
        raise ValueError(f"unknown method {method!r}; choose from {list(METHODS)}")


def _graph(model):
    """model(x, training=False) as one TensorFlow graph, traced once per batch shape: called
    eagerly, Keras runs each layer from Python (the small preset's trunk took 1.3 ms a frame
    that way against 0.3 ms of plain TF ops; benchmarks/bench_localization.py, 64 frames).
    Under another Keras backend (KERAS_BACKEND=jax) the plain call."""
    import keras  # noqa: PLC0415
    if keras.backend.backend() != "tensorflow":
        return lambda x: model(x, training=False)
    import tensorflow as tf  # noqa: PLC0415
    return tf.function(lambda x: model(x, training=False), reduce_retracing=True)


def unconditioned_map(maps: np.ndarray) -> np.ndarray:
    """The sound-free activation map: mean of conv4_2 (after ReLU) over channels, [n, h, w]."""
    return np.asarray(maps, np.float32).mean(-1)


def shift_and_stitch(images: np.ndarray, maps_fn, shifts: int) -> np.ndarray:
    """A feature map `shifts` times finer than `maps_fn`'s, at the same scale.

    images float32 [n, H, W, 3]; maps_fn: images -> [n, h, w, C] with a stride of
    s = H / h = W / w pixels (cell (i, j) the features of input pixels [s i, s (i + 1)) x
    [s j, s (j + 1))). With step t = s / shifts and p = (s - t) / 2, pass (a, b) runs
    maps_fn on the frame moved by (a t - p, b t - p) pixels (edges repeated), and its
    cell (i, j) becomes cell (shifts i + a, shifts j + b) of the result: cell (k, l)
    holds the features of the s-pixel window starting at (k t - p, l t - p), centred
    on the middle of its own t x t share of the frame, so `upsample` places it right.
    Returns float32 [n, shifts h, shifts w, C]; maps_fn(images) itself when shifts is 1
    or s is not a multiple of 2 shifts.
    """
    if shifts == 1:
        return maps_fn(images)
    n, height, width = images.shape[:3]
    probe = maps_fn(images[:1])
    h, w, channels = probe.shape[1:]
    stride = height // h
    if height != stride * h or width != stride * w or stride % (2 * shifts):
        return maps_fn(images)
    step = stride // shifts
    pad = (stride - step) // 2
    padded = np.pad(images, ((0, 0), (pad, stride), (pad, stride), (0, 0)), mode="edge")
    out = np.empty((n, h * shifts, w * shifts, channels), np.float32)
    for a in range(shifts):
        for b in range(shifts):
            moved = padded[:, a * step:a * step + height, b * step:b * step + width]
            out[:, a::shifts, b::shifts] = maps_fn(moved)
    return out
