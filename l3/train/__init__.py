"""AVC training: configuration (`config`), the step (`step`), the outer loop
(`controller`) and its actions (`actions`), set-up and resume (`loop`), its input (`inputs`),
precision, strategies and checkpoints (`distribute`), what a run folder holds
(`run_dir`) and small helpers (`utils`).

`l3.train` re-exports the loop's public names (`train`, `Trainer`, ...).
"""

from l3.train.loop import (GPU_STEPS_PER_LOOP, JITTER_STREAM, NonFiniteLossError, StepOutputs,
                           Trainer, train)
