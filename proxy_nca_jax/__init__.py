# Copyright 2026 The proxy_nca_jax Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Proxy-NCA deep metric learning in JAX (Movshovitz-Attias et al., 2017).

The library surface needs only the core install (``pip install .``: JAX,
Flax, optax, NumPy, chex; no TensorFlow, tfds, orbax calls or matplotlib):

- ``proxy_nca_jax.losses``: every loss (Proxy-NCA, proxy ranking,
  Proxy-Anchor, dynamic assignment, the pair baselines);
- ``proxy_nca_jax.proxies``: proxy initialisation and assignment;
- ``proxy_nca_jax.evaluation``: Recall@K, MAP@R, R-Precision, NMI/AMI;
- ``proxy_nca_jax.models``: the networks and their embedding head.

The rest (``data``, ``inference``, ``training``, ``reports``,
``deployment``, the commands ``train``, ``evaluate``, ``export``,
``index``, ``search``, ``import_weights``) is the training system and its
way to use, installed with the ``train`` extra; docs/layout.md draws the
layers.
"""

__version__ = "0.1.0"
