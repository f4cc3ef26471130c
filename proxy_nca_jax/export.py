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
r"""Exports a trained run's embedder for use without this package.

  python -m proxy_nca_jax.export --workdir=workdirs/fashion_mnist \
      --out=fmnist_embedder.npz [--format=jax|saved_model] [--step=N] \
      [--input_size=H,W]

``--format=jax`` (default) writes one ``.npz``: the embedder serialised by
``jax.export`` (uint8 images (B, H, W, C) -> unit-norm float32 (B, D);
evaluation preprocessing, network, head and normalisation inside; B any
size) and its spec as JSON. Load it with JAX and NumPy alone, as
deployment/exported_model.py shows. ``--format=saved_model`` writes a
TensorFlow SavedModel folder (signature ``serving_default``: ``images`` ->
``embeddings``) for TF Serving.

The input size is the dataset's image size (grey-level datasets) or
``eval_resize`` square (colour); ``--input_size`` exports a colour model
for another size (resized inside as the evaluation does).
"""

import sys

from absl import flags

from proxy_nca_jax import command_line, errors
from proxy_nca_jax.deployment import embedder, exported_model

_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Workdir of a training run (config.json, checkpoints/)."
)
_OUT = flags.DEFINE_string(
  "out", None, "File to write (.npz), or folder for --format=saved_model."
)
_FORMAT = flags.DEFINE_enum(
  "format", "jax", ["jax", "saved_model"], "What to write."
)
_STEP = flags.DEFINE_integer(
  "step", None, "Checkpoint to export (default: the newest)."
)
_INPUT_SIZE = flags.DEFINE_list(
  "input_size", None, "H,W of the exported input (colour models only)."
)
flags.mark_flags_as_required(["workdir", "out"])


def _input_shape() -> tuple[int, int, int] | None:
  if _INPUT_SIZE.value is None:
    return None
  try:
    height, width = (int(v) for v in _INPUT_SIZE.value)
  except ValueError:
    raise errors.InvalidInputError(
      f"--input_size={','.join(_INPUT_SIZE.value)} must be two integers H,W."
    ) from None
  return (height, width, 3)


def main() -> None:
  out = _OUT.value
  if _FORMAT.value == "jax" and not out.endswith(".npz"):
    raise errors.InvalidInputError(f"--out={out} must name a .npz file.")
  embed, spec = embedder.from_workdir(
    _WORKDIR.value, _input_shape(), _STEP.value
  )
  if _FORMAT.value == "jax":
    exported_model.save(embed, spec, out)
  else:
    exported_model.save_saved_model(embed, spec, out)
  shape = ", ".join(map(str, spec.input_shape))
  sys.stdout.write(
    f"wrote {out}: uint8 images (batch, {shape}) -> {spec.embedding_dim}-d "
    f"unit embeddings; {spec.describe()}\n"
  )


if __name__ == "__main__":
  command_line.run(main)
