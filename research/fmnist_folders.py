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
r"""Writes Fashion-MNIST classes as folders of PNG files (ImageFolder layout).

  python -m research.fmnist_folders --out=/tmp/fmnist_folders \
      [--idx_dir=/usr/share/datasets/fashion-mnist] [--classes=5,6,7,8,9] \
      [--per_class=N] [--queries_per_class=1]

From the IDX files of ``apt-get install dataset-fashion-mnist``, writes
``OUT/gallery/CLASS/NNNNN.png`` from the t10k file (the first ``per_class``
images of each class, all by default) and ``OUT/queries/CLASS/NNNNN.png``
from the train file (the first ``queries_per_class`` of each class, never
in the gallery). The default classes are FMNIST-ZS's test classes, never
seen in training by the default run: the search picture of docs/deployment.md.
"""

import os

from absl import app, flags
from PIL import Image

from proxy_nca_jax.data.builders import fashion_mnist_idx

_OUT = flags.DEFINE_string("out", None, "Folder to write.")
_IDX_DIR = flags.DEFINE_string(
  "idx_dir", "/usr/share/datasets/fashion-mnist", "The four IDX files."
)
_CLASSES = flags.DEFINE_list("classes", ["5", "6", "7", "8", "9"], "Ids.")
_PER_CLASS = flags.DEFINE_integer(
  "per_class", None, "Gallery images per class (default: all)."
)
_QUERIES = flags.DEFINE_integer("queries_per_class", 1, "Queries per class.")
flags.mark_flag_as_required("out")


def _write(images, labels, classes, per_class, folder) -> int:
  written = 0
  for label in classes:
    name = fashion_mnist_idx.CLASS_NAMES[label].replace("/", "-")
    target = os.path.join(folder, name.replace(" ", "_"))
    os.makedirs(target, exist_ok=True)
    ids = [i for i, y in enumerate(labels) if y == label][:per_class]
    for i in ids:
      Image.fromarray(images[i]).save(os.path.join(target, f"{i:05d}.png"))
    written += len(ids)
  return written


def main(argv: list[str]) -> None:
  del argv
  classes = [int(c) for c in _CLASSES.value]
  idx = _IDX_DIR.value
  test = fashion_mnist_idx.read_split(
    os.path.join(idx, "t10k-images-idx3-ubyte.gz"),
    os.path.join(idx, "t10k-labels-idx1-ubyte.gz"),
  )
  train = fashion_mnist_idx.read_split(
    os.path.join(idx, "train-images-idx3-ubyte.gz"),
    os.path.join(idx, "train-labels-idx1-ubyte.gz"),
  )
  gallery = os.path.join(_OUT.value, "gallery")
  queries = os.path.join(_OUT.value, "queries")
  count = _write(*test, classes, _PER_CLASS.value, gallery)
  asked = _write(*train, classes, _QUERIES.value, queries)
  print(f"wrote {count} images under {gallery} and {asked} under {queries}")


if __name__ == "__main__":
  app.run(main)
