"""l3: Look, Listen and Learn (Arandjelović & Zisserman, ICCV 2017) in TF2 / Keras 3.

Modules: `constants` (paper numbers), `presets`, `audio` and `image` (front
ends and augmentation), `records` (TFRecord schema), `pairs` (AVC pair
pipeline), `model`, `train`, `export`, `transfer`, `analysis`; binaries in
`l3.bin`.
"""

__version__ = "0.1.0"
