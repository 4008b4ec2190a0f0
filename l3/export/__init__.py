"""Exported encoders: writing them from a model or checkpoint and reading them back.

`l3.export` re-exports the public names (`export_model`, `export_checkpoint`,
`ExportedModel`, `read_export_info`, the folder names).
"""

from l3.export.writer import (AUDIO_ENCODER, AVC, DEFAULT_FORMATS, EXPORT_JSON, FORMATS,
                              FRONTEND_PRECISION, VISION_ENCODER, ExportedModel, check_formats,
                              export_checkpoint, export_model, portable_models, read_export_info)
