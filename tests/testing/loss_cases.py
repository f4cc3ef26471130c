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
"""Random batches and loss configs shared by the loss and loss-binding tests."""

import numpy as np

from configs import fashion_mnist
from proxy_nca_jax.training import loss_binding


def random_batch(seed, batch=12, dim=5, classes=4, num_proxies=None):
  """(embeddings (batch, dim), labels (batch,), proxies), float32 and int32;
  ``num_proxies`` proxies (default: one per class)."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(batch, dim)).astype(np.float32)
  labels = rng.integers(0, classes, size=batch).astype(np.int32)
  proxies = rng.normal(size=(num_proxies or classes, dim)).astype(np.float32)
  return x, labels, proxies


def loss_config(name, **overrides):
  """The FMNIST-ZS config's loss section for loss ``name``, overridden."""
  config = fashion_mnist.get_config().loss
  config.name = name
  for key, value in overrides.items():
    config[key] = value
  return config


def create_loss_fn(config, class_counts=None):
  """``loss_binding.create_loss_fn`` at step 0 (the step only draws sampled
  negatives: tests/losses/sampled_proxies_test.py); ``class_counts``, the
  class sizes, for dynamic_arcface."""
  loss_fn = loss_binding.create_loss_fn(config, class_counts=class_counts)
  return lambda x, labels, proxies: loss_fn(x, labels, proxies, 0)
