r"""Writes tests/fixtures/golden/{small,paper}.npz: reference outputs of a seeded model.

  .venv/bin/python scripts/make_golden.py                # both presets
  .venv/bin/python scripts/make_golden.py --check        # compare only, write nothing
  .venv/bin/python scripts/make_golden.py --add_missing  # add new keys, keep the stored ones

tests/model/test_golden.py compares today's `embedding` and `conv4_2_pooled` (audio
and vision) and the AVC logits of the seeded model on fixed inputs
(tests/fixtures/golden_reference.py) with these files, so that any change that moves the numbers - the
spectrogram front end, a layer, padding, pooling, batch norm, initialisation
- fails a test.

When to regenerate: ONLY after a change that is *meant* to change the
encoders' outputs (a deliberate fix of the front end or architecture, a new
initialiser), and say so in the commit. A refactor (e.g. moving the
spectrogram to keras.ops) must pass the test against the old files
unchanged: that is what they are for. Regenerating also stores the versions
of the libraries that made them (in the npz's `versions`). When a new output
joins `golden_reference.OUTPUT_KEYS`, `--add_missing` writes only that one and
keeps the stored arrays byte for byte (after checking that they still match).
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from l3.core import fileio, presets  # noqa: E402
from l3.model import network as model
from tests.fixtures import golden_reference  # noqa: E402

GOLDEN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "tests", "fixtures", "golden")


def _versions() -> str:
    import keras
    import tensorflow as tf
    return json.dumps({"tensorflow": tf.__version__, "keras": keras.__version__,
                       "numpy": np.__version__})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Compare with the stored files.")
    parser.add_argument("--add_missing", action="store_true",
                        help="Write only the keys the stored files lack; keep the others "
                             "(refused if they no longer match).")
    parser.add_argument("--presets", default="small,paper")
    args = parser.parse_args()
    status = 0
    for name in args.presets.split(","):
        preset = presets.get_preset(name)
        # Equal across processes and machines: the seed reproduces the initial weights.
        digest = model.weights_digest(golden_reference.seeded_model(preset))
        out = golden_reference.golden_outputs(preset)
        path = os.path.join(GOLDEN_DIR, f"{name}.npz")
        if args.check or args.add_missing:
            with np.load(path) as f:
                stored = {k: f[k] for k in f.files}
            present = [k for k in golden_reference.OUTPUT_KEYS if k in stored]
            diff = max(float(np.abs(stored[k] - out[k]).max() / np.abs(stored[k]).max())
                       for k in present)
            missing = [k for k in golden_reference.OUTPUT_KEYS if k not in stored]
            print(f"{name}: max relative difference {diff:.2e}, weights digest {digest}, "
                  f"missing {missing}")
            status |= diff > 1e-4 or (args.check and bool(missing))
            if args.check or diff > 1e-4 or not missing:
                continue
            arrays = dict(stored, **{k: out[k] for k in missing})
        else:
            arrays = dict(out, versions=np.array(_versions()), weights_digest=np.array(digest))
        with fileio.atomic_write(path, "wb") as f:
            np.savez_compressed(f, **arrays)
        print(f"wrote {path} ({os.path.getsize(path)} bytes), weights digest {digest}")
    return status


if __name__ == "__main__":
    sys.exit(main())
