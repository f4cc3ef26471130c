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
"""Index speed: images/s of ``index`` vs the evaluation's embedding.

For one trained run and one folder of image files, side by side in one
process (each timed after a warm-up call that compiles):

- index: ``deployment.gallery.build`` of the folder into a new gallery
  (decode with Pillow, uint8 batches, the jitted embedder);
- evaluation pipeline: ``inference.split_embedding.embed_split`` of as many
  images of the run's test split (tfds, the path of every evaluation).

  python -m research.fmnist_folders --out=/tmp/fmnist_folders
  python -m benchmarks.index_speed --workdir=workdirs/fashion_mnist \
      --images=/tmp/fmnist_folders/gallery
"""

import os
import shutil
import tempfile
import time

import jax
from absl import app, flags

from benchmarks import cpu_timing
from proxy_nca_jax import parallel
from proxy_nca_jax.data import image_files
from proxy_nca_jax.deployment import embedder, gallery
from proxy_nca_jax.inference import embedding, split_embedding, trained_model

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained run.")
_IMAGES = flags.DEFINE_string("images", None, "A folder of image files.")
flags.mark_flags_as_required(["workdir", "images"])


def _timed(fn) -> tuple[float, float]:
  """(seconds, load average) of one call."""
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start, os.getloadavg()[0]


def main(argv: list[str]) -> None:
  del argv
  workdir, folder = _WORKDIR.value, _IMAGES.value
  count = len(image_files.list_images(folder))
  embed, spec = embedder.from_workdir(workdir)
  jitted = jax.jit(embed)
  out = tempfile.mkdtemp(prefix="index_speed_")

  def index():
    shutil.rmtree(out, ignore_errors=True)
    gallery.build(jitted, spec, {"workdir": workdir}, folder, out, log=print)

  mesh = parallel.create_mesh(jax.devices()[:1])
  trained = trained_model.load(workdir)
  config = trained.config
  with config.unlocked():
    config.input.max_eval_examples = count

  rows = {
    "index (gallery.build)": index,
    "evaluation pipeline (embed_split)": lambda: split_embedding.embed_split(
      embedding.make_embed_fn(trained.model, mesh),
      trained.variables,
      config.input,
      "test",
      mesh,
      keep_images=True,
    ),
  }
  print(cpu_timing.machine_description())
  print(f"{count} images of {folder}\n")
  print("| path | images/s | seconds | load (1 min) |\n|---|---|---|---|")
  for name, fn in rows.items():
    fn()  # Compile.
    seconds, load = _timed(fn)
    print(f"| {name} | {count / seconds:.0f} | {seconds:.2f} | {load:.2f} |")
  shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
