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
"""Your own images, one folder per class: ROOT/CLASS/IMAGE.jpg.

Also ROOT/SPLIT/CLASS/IMAGE.jpg: every split folder is pooled. Classes are
numbered by their folder names in sorted order, and by default the first
half of them (rounded down) train and the others test, never seen in
training. The recipe is chosen at start-up from the images and the weights
given (data/folder_recipe.py: small images without weights train convnet-S
at their size; with --config.model.pretrained the paper recipe); ask for
one with the argument items of configs/benchmark_common.py
(`recipe=paper`, `recipe=proxynca_pp`, `smoke`):

  python -m proxy_nca_jax.train --config=configs/image_folder.py \
      --workdir=workdirs/my_images --config.input.image_folder=ROOT

Choose the split with --config.input.num_train_classes=N (first N sorted
classes train), --config.input.num_val_classes=V (the last V of those
validate), or explicit ids: --config.input.train_classes='(0,1,2)'
--config.input.test_classes='(3,4)'. Before training, every file is
checked: a class folder without images, a wrong layout or an unreadable
image stops the run with a message naming them. `schedule.num_steps`
counts 20 epochs of a 1,000-image training half: set it for your data.
"""

import ml_collections

from configs import benchmark_common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the image-folder config; `arg`: see benchmark_common.

  Without ``recipe=`` in `arg`, ``model.name`` is "auto": the run chooses
  the recipe from the images and the weights given
  (proxy_nca_jax/data/folder_recipe.py).
  """
  config = benchmark_common.get_config(
    dataset="image_folder",
    num_train_classes=None,
    num_train_images=1_000,
    recall_ks=(1, 2, 4, 8),
    arg=arg,
  )
  if "recipe=" not in (arg or ""):
    with config.unlocked():
      config.model.name = "auto"
  return config
