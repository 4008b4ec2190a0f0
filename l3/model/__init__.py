"""L3-Net (section 2.3): the networks (`network`) and the spectrogram front ends (`frontend`).

Backend-neutral Keras 3 (`keras.ops` only): `import l3.model` works under the
JAX and PyTorch backends without TensorFlow. `l3.model` re-exports the
network's public functions (`build_avc_model`, `build_encoder`, ...).
"""

from l3.model.network import (AUDIO, VISION, build_audio_network, build_avc_model, build_encoder,
                              build_fusion, build_vision_network, conv_block, subnetworks,
                              weight_decay_variables, weights_digest)
