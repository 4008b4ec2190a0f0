"""tests/train: the host CPU split into logical devices for the session, before TensorFlow starts.

The multi-replica tests (`test_step_options.py`, `cpu_replicas` runs) train with
MirroredStrategy over these devices (`l3.train.devices.split_cpu`, what
`l3-train --cpu_replicas` does). Conftests are imported while pytest collects,
before any test runs an op; single-device tests keep using /cpu:0.
"""

from l3.train import devices

CPU_DEVICES = 4

devices.split_cpu(CPU_DEVICES)
