# Copyright 2026 The proxy_nca_jax Authors.
# SPDX-License-Identifier: Apache-2.0
"""Installs proxy_nca_jax: Proxy-NCA deep metric learning in JAX and Flax."""

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
  install_requires=[
    "jax>=0.8.0",
    "flax>=0.11.0",
    "optax>=0.2.5",
    "tensorflow-datasets>=4.9.8",
    "tensorflow-cpu>=2.18",
    "tensorboard>=2.18",  # tf.summary writes through it.
    "orbax-checkpoint>=0.11.20",
    "numpy>=1.26",
    "chex>=0.1.90",
    "absl-py>=2.1",
    "ml-collections>=1.0",
    "importlib_resources>=6.0",
    "matplotlib>=3.8",  # Figures of proxy_nca_jax.evaluate.
    "fonttools>=4.40",  # GLYPHS-ZS: cmaps of the fonts.
    "pillow>=10.0",  # GLYPHS-ZS: glyph rendering.
  ],
  extras_require={
    "test": [
      "pytest>=8",
      "scikit-learn>=1.5",
      "ruff>=0.6",
      "hypothesis>=6.100",  # Property tests of the losses.
    ],
    "benchmark": [
      "torch==2.13.0",
      "pytorch-metric-learning>=2.8",
      "faiss-cpu",
    ],
  },
)
