r"""Writes tests/fixtures/golden/{small,paper}.npz: reference encoder outputs of a seeded model.

  .venv/bin/python scripts/make_golden.py            # both presets
  .venv/bin/python scripts/make_golden.py --check    # compare only, write nothing

tests/model/test_golden.py compares today's `embedding` and `conv4_2_pooled` (audio
and vision) of the seeded model on fixed inputs (tests/fixtures/golden_reference.py)
with these files, so that any change that moves the numbers - the
spectrogram front end, a layer, padding, pooling, batch norm, initialisation
- fails a test.

When to regenerate: ONLY after a change that is *meant* to change the
encoders' outputs (a deliberate fix of the front end or architecture, a new
initialiser), and say so in the commit. A refactor (e.g. moving the
spectrogram to keras.ops) must pass the test against the old files
unchanged: that is what they are for. Regenerating also stores the versions
of the libraries that made them (in the npz's `versions`).
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
    parser.add_argument("--presets", default="small,paper")
    args = parser.parse_args()
    status = 0
    for name in args.presets.split(","):
        preset = presets.get_preset(name)
        # Equal across processes and machines: the seed reproduces the initial weights.
        digest = model.weights_digest(golden_reference.seeded_model(preset))
        out = golden_reference.golden_outputs(preset)
        path = os.path.join(GOLDEN_DIR, f"{name}.npz")
        if args.check:
            with np.load(path) as stored:
                diff = max(float(np.abs(stored[k] - out[k]).max() / np.abs(stored[k]).max())
                           for k in golden_reference.OUTPUT_KEYS)
            print(f"{name}: max relative difference {diff:.2e}, weights digest {digest}")
            status |= diff > 1e-4
            continue
        with fileio.atomic_write(path, "wb") as f:
            np.savez_compressed(f, versions=np.array(_versions()),
                                weights_digest=np.array(digest), **out)
        print(f"wrote {path} ({os.path.getsize(path)} bytes), weights digest {digest}")
    return status


if __name__ == "__main__":
    sys.exit(main())
