"""`l3-embed`'s library side: inputs to a mirrored tree of `.npz` files, with a skip report.

One `.npz` per input file, at `output_dir/<path relative to the inputs'
common folder>[_<suffix>].npz`, the extension kept (`dog.wav` ->
`dog.wav.npz`, so `dog.wav` and `dog.mp4` do not collide). Arrays: see
`l3.embeddings.files`.

Defaults are the tool's historical behaviour: windows from the first sample
(`center=False`: only whole windows, stamped at their centres), 0.1 s hop,
1 video frame per second, batch 64. `center=True` gives openl3's windows.

A file that cannot be read is skipped and reported in
`output_dir/skipped.json` (a list of {"path", "reason", "error"}); an
existing output is kept unless `overwrite` (so a rerun resumes).
"""

import os
import time
from typing import Dict, Optional, Sequence

from l3.core import fileio
from l3.embeddings import files

SKIPPED_JSON = "skipped.json"
DEFAULT_BATCH_SIZE = 64


def output_names(paths: Sequence[str], suffix: Optional[str] = None) -> Dict[str, str]:
    """Absolute input path -> output name relative to output_dir (common folder removed)."""
    if not paths:
        return {}
    common = os.path.commonpath([os.path.dirname(p) for p in paths])
    tail = f"_{suffix}.npz" if suffix else ".npz"
    return {p: os.path.relpath(p, common) + tail for p in paths}


def embed_files(model, inputs: Sequence[str], output_dir: str, *,
                options: Optional[files.Options] = None, suffix: Optional[str] = None,
                overwrite: bool = False, kind: Optional[str] = None,
                progress: bool = True) -> Dict:
    """Embeds every file of `inputs` (files, folders, list files) into `output_dir`.

    Args:
      model: an `l3.export.ExportedModel` or an export directory path.
      options: hop, centring, fps, features, batch size, max_seconds,
        decoding workers (`files.Options`; default: the tool's defaults above).
      suffix: appended to every output name (`dog.wav_<suffix>.npz`).
      overwrite: recompute outputs that exist (default: keep them, i.e. resume).
      kind: force "audio", "image" or "video" (default: by extension; other
        files given explicitly are tried as audio).
    Returns:
      {"embedded", "existing", "skipped" (counts), "outputs" [paths written],
      "skipped_files" [records], "seconds"}. `output_dir/skipped.json` holds
      the skip records (an empty list when none).
    """
    if options is None:
        options = files.Options(center=False, batch_size=DEFAULT_BATCH_SIZE)
    if kind is not None and kind not in files.KINDS:
        raise ValueError(f"kind must be one of {files.KINDS}, got {kind!r}")
    start = time.perf_counter()
    os.makedirs(output_dir, exist_ok=True)
    paths, skipped = files.collect_inputs(inputs)
    names = output_names(paths, suffix)
    items, existing = [], 0
    for path in paths:
        out = os.path.join(output_dir, names[path])
        if os.path.exists(out) and not overwrite:
            existing += 1
        else:
            items.append((path, out, kind or files.kind_of(path) or "audio"))
    try:
        outputs, failures = files.run(model, items, options, progress=progress)
        skipped.extend(failures)
    finally:
        fileio.write_json(os.path.join(output_dir, SKIPPED_JSON), skipped)
    return {"embedded": len(outputs), "existing": existing, "skipped": len(skipped),
            "outputs": outputs, "skipped_files": skipped,
            "seconds": round(time.perf_counter() - start, 3)}
