"""Exported encoders: writing them (writer), reading them back (reader), and
P(corresponds) from a model, a checkpoint or an export (predictors).

`l3.export` re-exports the public names (`export_model`, `export_checkpoint`,
`ExportedModel`, `read_export_info`, the folder names, the predictors).
"""

from l3.export.reader import (AUDIO_ENCODER, AVC, EXPORT_JSON, VISION_ENCODER, ExportedModel,
                              SavedSignature, locate_avc, read_export_info)
from l3.export.writer import (DEFAULT_FORMATS, FORMATS, FRONTEND_PRECISION, check_formats,
                              export_checkpoint, export_model, portable_models)
from l3.export.predictors import Predictor, from_checkpoint, from_export, from_model
