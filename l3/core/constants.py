"""Every number taken from the paper, in one place, with where it comes from.

Arandjelović & Zisserman, "Look, Listen and Learn", ICCV 2017
(`shared/paper/look_listen_learn.txt`). Numbers the text extraction lost are
restored from `docs/DESIGN.md`. A number that is *not* from the paper says
where it comes from instead.
"""

# --- Section 2.2, "Log-spectrogram computation" -----------------------------
SAMPLE_RATE = 48_000          # "The 1 second audio is resampled to 48 kHz"
CLIP_SECONDS = 1.0            # "a 1 second sound clip" (2.1, audio subnetwork)
STFT_WINDOW_SECONDS = 0.01    # "window length of 0.01 seconds"
STFT_WINDOW = 480             # 0.01 s at 48 kHz
STFT_HOP = 240                # "a half-window overlap"
FFT_LENGTH = 512              # docs/DESIGN.md: 257 bands = 512 // 2 + 1
SPECTROGRAM_FRAMES = 199      # "this produces 199 windows"
SPECTROGRAM_BANDS = 257       # "with 257 frequency bands"
# Not from the paper: the offset inside log(|STFT| + offset). The paper only
# says "passed through a logarithm"; an offset keeps silence finite. 1e-6 is
# below the quantisation floor of 16-bit audio (an int16 LSB is 3e-5), so it
# only ever matters for digital silence. Recorded in WORKSPACE_NOTES.md.
LOG_OFFSET = 1e-6
# Not from the paper: front ends other than its linear spectrogram (issue 15;
# openl3, Cramer et al. ICASSP 2019, found 128- and 256-band log-mel
# spectrograms transfer better). `linear` is the paper's.
INPUT_REPRS = ("linear", "mel128", "mel256")
MEL_BANDS = {"mel128": 128, "mel256": 256}
# Not from the paper: the zero-padded FFT length of the mel front ends at
# 48 kHz (openl3's n_dft). With the paper's 512 points (93.75 Hz apart) most
# of the narrow low mel filters would fall between two bins and be empty.
MEL_FFT_LENGTH = 2048

# --- Section 2.2, data augmentation -----------------------------------------
RESIZE_SMALLER_SIDE = 256     # "scaled such that the smallest dimension is 256"
IMAGE_SIZE = 224              # "random cropping into 224x224"
VOLUME_MAX_CHANGE = 0.10      # "changing the volume up to 10% randomly"
# Not from the paper (it names brightness and saturation jitter without
# ranges): the ranges of the Inception / slim preprocessing of the time.
BRIGHTNESS_MAX_DELTA = 32.0 / 255.0
SATURATION_RANGE = (0.5, 1.5)

# --- Section 2.1, network architecture --------------------------------------
BLOCK_FILTERS = (64, 128, 256, 512)  # "64, 128, 256 and 512"
KERNEL_SIZE = 3                       # "3x3 convolutional filters"
POOL_SIZE = 2                         # "max-pooling ... stride 2, no padding"
# docs/DESIGN.md section 3, "conv1_1 has stride 2": the stated 16x12 audio conv4_2 needs it.
CONV1_1_STRIDE = 2
EMBEDDING_DIM = 512                   # "a single 512-D feature vector"
FUSION_HIDDEN = 128                   # "intermediate feature size of 128-D"
NUM_OUTPUTS = 2                       # "2-way classification output"

# --- Section 2.2, training ----------------------------------------------------
LEARNING_RATE = 1e-4          # "usually 1e-4 works well"
WEIGHT_DECAY = 1e-5           # "weight decay 1e-5"
PER_REPLICA_BATCH = 16        # "each worker processed a 16-element batch"
NUM_REPLICAS = 16             # "trained on 16 GPUs in parallel"
GLOBAL_BATCH = 256            # "effective batch size of 256"
TRAIN_PAIRS = 60_000_000      # "it has seen 60M frame-audio pairs"
VIDEO_SECONDS = 10.0          # 3.1: "only use the first 10 seconds of each video"

# --- Sections 3.3 and 3.4, transfer ------------------------------------------
ESC50_SUBCLIPS = 10           # "10 equally spaced 1 second subclips"
DCASE_SUBCLIPS = 60           # "60 subclips are extracted per clip"
AUDIO_TRANSFER_POOL = (4, 4)  # conv4_2 16x12 -> 4x3 ("equal kernel and stride")
AUDIO_TRANSFER_DIM = 6144     # 4 x 3 x 512
VISION_TRANSFER_POOL = (3, 3)  # conv4_2 14x14 -> 4x4
VISION_TRANSFER_DIM = 8192    # 4 x 4 x 512, "below 10k"

# --- Section 3.5, analysis -----------------------------------------------------
KMEANS_CLUSTERS = 64          # Table 4
UNIT_TOP_K = 5                # 3.5.3: "retaining the top 5"
UNIT_PREFERENCE_THRESHOLDS = (4, 3)  # "4 out of these 5", "reduced to 3"

# --- The paper's reported numbers (for tables printed beside ours) -----------
PAPER_RESULTS = {
    "avc_accuracy_flickr": 0.78,          # Table 1
    "avc_accuracy_kinetics": 0.74,        # Table 1
    "avc_direct_combination": 0.65,       # Table 1, supervised baseline
    "avc_supervised_pretraining": 0.74,   # Table 1, supervised baseline
    "esc50_accuracy": 0.793,              # Table 2
    "dcase_accuracy": 0.93,               # Table 2
    "imagenet_top1": 0.323,               # Table 3
    "imagenet_top1_random": 0.129,        # Table 3
    "nmi_vision_trained": 0.409,          # Table 4
    "nmi_vision_untrained": 0.204,
    "nmi_audio_trained": 0.330,
    "nmi_audio_untrained": 0.219,
    "nmi_random_assignment": 0.165,
    "units_vision_top5_4": 10, "units_vision_top5_4_untrained": 1,  # 3.5.3
    "units_audio_top5_4": 11, "units_audio_top5_4_untrained": 1,
    "units_vision_top5_3": 23, "units_vision_top5_3_untrained": 4,
    "units_audio_top5_3": 20, "units_audio_top5_3_untrained": 3,
}
