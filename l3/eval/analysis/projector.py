"""TensorBoard Embedding Projector export of the held-out embeddings.

`export_projector(directory, embeddings, metadata, images)` writes

  directory/projector_config.pbtxt   one `embeddings { ... }` entry per tensor
  directory/<name>.tsv               the tensor, one row per item, tab-separated
  directory/metadata.tsv             header row, then one row per item (class, ...)
  directory/sprite.png               the items' frames tiled row-major in a square grid

Open it with `tensorboard --logdir directory` (Projector tab; with no event
files TensorBoard treats the log dir itself as the run), or load the TSVs at
projector.tensorflow.org. Tensors are stored as TSV (`tensor_path`) rather than
a checkpoint, so the files are readable anywhere and writing them needs neither
TensorBoard nor a TF checkpoint.
"""

import os
from typing import Dict, Sequence

import numpy as np
from PIL import Image

CONFIG = "projector_config.pbtxt"
METADATA = "metadata.tsv"
SPRITE = "sprite.png"
# TensorBoard's projector refuses sprites larger than 8192 x 8192 pixels.
MAX_SPRITE_SIDE = 8192


def _clean_cell(value) -> str:
    return str(value).replace("\t", " ").replace("\n", " ")


def write_tensor_tsv(path: str, tensor: np.ndarray) -> None:
    """[n, D] floats, one row per line, tab-separated."""
    np.savetxt(path, np.asarray(tensor, np.float32), delimiter="\t", fmt="%.6g")


def write_metadata(path: str, columns: Dict[str, Sequence]) -> None:
    """A header of column names, then one row per item (the projector's multi-column format)."""
    names = list(columns)
    n = len(columns[names[0]])
    if any(len(columns[c]) != n for c in names):
        raise ValueError("metadata columns differ in length")
    with open(path, "w") as f:
        f.write("\t".join(names) + "\n")
        for i in range(n):
            f.write("\t".join(_clean_cell(columns[c][i]) for c in names) + "\n")


def sprite_thumbnail_size(num_items: int, image_size: int, max_thumb: int = 64) -> int:
    """Thumbnail side so that ceil(sqrt(n)) of them fit in MAX_SPRITE_SIDE."""
    per_row = max(1, int(np.ceil(np.sqrt(num_items))))
    return int(max(1, min(max_thumb, image_size, MAX_SPRITE_SIDE // per_row)))


def write_sprite(path: str, images: np.ndarray, thumb: int) -> None:
    """Tiles float [n, H, W, 3] images in [0, 1] as thumb x thumb cells of a square grid."""
    n = len(images)
    per_row = max(1, int(np.ceil(np.sqrt(n))))
    sheet = Image.new("RGB", (per_row * thumb, per_row * thumb), "white")
    for i, img in enumerate(images):
        tile = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
        tile = tile.resize((thumb, thumb), Image.BILINEAR)
        sheet.paste(tile, ((i % per_row) * thumb, (i // per_row) * thumb))
    sheet.save(path)


def config_text(tensors: Dict[str, str], metadata: str, sprite: str = "",
                thumb: int = 0) -> str:
    """projector_config.pbtxt (text-format ProjectorConfig); paths relative to the config."""
    blocks = []
    for name, tsv in tensors.items():
        lines = ["embeddings {", f'  tensor_name: "{name}"', f'  tensor_path: "{tsv}"',
                 f'  metadata_path: "{metadata}"']
        if sprite:
            lines += ["  sprite {", f'    image_path: "{sprite}"',
                      f"    single_image_dim: {thumb}", f"    single_image_dim: {thumb}", "  }"]
        lines.append("}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks) + "\n"


def export_projector(directory: str, embeddings: Dict[str, np.ndarray],
                     metadata: Dict[str, Sequence], images: np.ndarray = None) -> Dict[str, str]:
    """Writes the projector files (see module docstring).

    Args:
      embeddings: {tensor name: float [n, D]}, e.g. "vision_trained"; names are
        used as file names too.
      metadata: {column: n values}; put the class first (the projector colours
        by any column).
      images: optional float [n, S, S, 3] in [0, 1] for the sprite.
    Returns: {"config": path, "metadata": path, "sprite": path or "", name: tsv path}.
    """
    os.makedirs(directory, exist_ok=True)
    n = {len(v) for v in embeddings.values()}
    if len(n) != 1:
        raise ValueError(f"embeddings differ in number of rows: {sorted(n)}")
    out = {}
    tensors = {}
    for name, tensor in embeddings.items():
        fname = f"{name}.tsv"
        write_tensor_tsv(os.path.join(directory, fname), tensor)
        tensors[name] = fname
        out[name] = os.path.join(directory, fname)
    write_metadata(os.path.join(directory, METADATA), metadata)
    out["metadata"] = os.path.join(directory, METADATA)
    thumb = 0
    out["sprite"] = ""
    if images is not None and len(images):
        thumb = sprite_thumbnail_size(len(images), images.shape[1])
        write_sprite(os.path.join(directory, SPRITE), images, thumb)
        out["sprite"] = os.path.join(directory, SPRITE)
    with open(os.path.join(directory, CONFIG), "w") as f:
        f.write(config_text(tensors, METADATA, SPRITE if thumb else "", thumb))
    out["config"] = os.path.join(directory, CONFIG)
    return out
