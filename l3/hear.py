"""The HEAR 2021 API entry point (`hear-eval --module l3.hear`): see `l3.embeddings.hear`."""

from l3.embeddings.hear import (BATCH_SIZE, FEATURE, SCENE_HOP_S, TIMESTAMP_HOP_S, L3HearModel,
                                get_scene_embeddings, get_timestamp_embeddings, load_model)
