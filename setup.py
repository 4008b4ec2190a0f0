"""l3: Look, Listen and Learn (L3-Net) in TensorFlow 2 / Keras 3.

Install (CPU):  pip install -r requirements.txt -e .
Install (GPU):  pip install -r requirements-gpu.txt -e .
"""

from setuptools import find_packages, setup

CONSOLE_SCRIPTS = {
    "l3-build-tfrecords": "l3_tfrecords.build",
    "l3-train": "l3.bin.train",
    "l3-data-service": "l3.bin.data_service",
    "l3-eval-avc": "l3.bin.eval_avc",
    "l3-export": "l3.bin.export",
    "l3-embed": "l3.bin.embed",
    "l3-esc50": "l3.bin.esc50",
    "l3-dcase": "l3.bin.dcase",
    "l3-imagenet-probe": "l3.bin.imagenet_probe",
    "l3-kinetics-baselines": "l3.bin.kinetics_baselines",
    "l3-analyze": "l3.bin.analyze",
    "l3-retrieval": "l3.bin.retrieval",
    "l3-localize": "l3.bin.localize",
    "l3-demo": "l3.bin.demo",
    "l3-verify-tfrecords": "l3_tfrecords.verify",
}

setup(
    name="l3",
    version="0.1.0",
    description="Look, Listen and Learn: audio-visual correspondence learning in TF2/Keras 3",
    # The builder lives in the folder tfrecords/ but imports as `l3_tfrecords`: a top-level
    # `tfrecords` would clash with an unrelated package on PyPI.
    packages=find_packages(include=["l3", "l3.*"]) + ["l3_tfrecords"],
    package_dir={"l3_tfrecords": "tfrecords"},
    python_requires=">=3.10",
    # Versions are pinned in requirements*.txt; these are the direct needs.
    install_requires=[
        "keras>=3.10", "numpy", "av", "soxr", "scikit-learn", "scipy", "absl-py",
        "tensorflow-datasets", "tqdm", "matplotlib", "pillow", "psutil", "google-crc32c",
    ],
    extras_require={
        "cpu": ["tensorflow-cpu==2.21.0"],
        "gpu": ["tensorflow[and-cuda]==2.21.0"],
        "test": ["pytest", "pytest-timeout", "nbclient", "nbformat", "ipykernel"],
    },
    entry_points={"console_scripts": [f"{name}={module}:run" for name, module in CONSOLE_SCRIPTS.items()]},
)
