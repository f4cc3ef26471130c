# Copyright 2026 The proxy_nca_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Installs proxy_nca_jax: Proxy-NCA deep metric learning in JAX and Flax.

`pip install .` is the library (losses, proxies, evaluation, models);
`pip install ".[train]"` adds what the commands need (train, evaluate,
embed, export, index, search). The lists stay literals: launch/tpu_vm.py
reads them from this file.
"""

import setuptools

setuptools.setup(
  name="proxy_nca_jax",
  version="0.1.0",
  description=(
    "No Fuss Distance Metric Learning using Proxies (Proxy-NCA) in JAX."
  ),
  license="Apache-2.0",
  python_requires=">=3.11",
  packages=setuptools.find_packages(
    include=["proxy_nca_jax", "proxy_nca_jax.*"]
  ),
  # The native kernels' sources, compiled on first use (native/library.py).
  package_data={"proxy_nca_jax.native": ["*.cc", "*.h"]},
  install_requires=[
    "jax>=0.8.0",
    "flax>=0.11.0",
    "optax>=0.2.5",
    "numpy>=1.26",
    "chex>=0.1.90",
    "absl-py>=2.1",
    "ml-collections>=1.0",
    # jax's dtypes. 0.7.0 takes 0.56 s to import (0.6.0: 4 ms; it adds its
    # ufunc loops one by one, each a scan of those before), which every
    # command and test process paid at start-up (docs/testing.md).
    "ml-dtypes>=0.5,!=0.7.0",
  ],
  extras_require={
    # The commands: train, evaluate, embed, export, index, search.
    "train": [
      "tensorflow-datasets>=4.9.8",
      "tensorflow-cpu>=2.18",
      "tensorboard>=2.18",  # tf.summary writes through it.
      "orbax-checkpoint>=0.11.20",
      "importlib_resources>=6.0",  # tfds imports it without declaring it.
      "matplotlib>=3.8",  # Figures: evaluate and the research reports.
      "pillow>=10.0",  # Image files (embed, index); glyph drawing.
      "fonttools>=4.40",  # GLYPHS-ZS: cmaps of the fonts.
    ],
    "test": [
      "proxy_nca_jax[train]",
      "pytest>=8",
      "pytest-xdist>=3.5",  # make test runs the suite on 2 workers.
      "scikit-learn>=1.5",
      "ruff>=0.6",
      "hypothesis>=6.100",  # Property tests of the losses.
      # PyTorch references of ResNet-50 / BN-Inception / ViTs and weight
      # import (.pth and .safetensors files).
      "torch==2.13.0",
      "safetensors>=0.4",
      # The accelerator benchmark's smoke test runs its peers.
      "pytorch-metric-learning>=2.8",
      "faiss-cpu",
    ],
    # python -m proxy_nca_jax.import_weights (reading PyTorch and
    # safetensors files).
    "weights": ["torch==2.13.0", "safetensors>=0.4"],
    # Preparing the paper's datasets with tfds: caltech_birds2011 reads its
    # segmentation masks with OpenCV, cars196 its annotations with scipy.
    "datasets": [
      "opencv-python-headless>=4.8",
      "scipy>=1.10",
    ],
    "benchmark": [
      "proxy_nca_jax[train]",
      "torch==2.13.0",
      "pytorch-metric-learning>=2.8",
      "faiss-cpu",
    ],
  },
)
