"""The bottom layer: paper constants, presets, error kinds, atomic file writes, the CLI runner.

Nothing here imports TensorFlow (the model imports `constants` and `presets`
under JAX and PyTorch too); every other package may import it.
"""
