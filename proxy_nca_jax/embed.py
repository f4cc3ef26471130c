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
r"""Embeds a folder of images with a trained run, for a retrieval system.

  python -m proxy_nca_jax.embed --workdir=workdirs/fashion_mnist \
      --images=DIR --out=embeddings.npy [--skip_bad_files]

Writes two files:

- ``--out`` (``.npy``): float32 (N, D), one unit-norm embedding per image
  (the latest checkpoint's network, inference mode).
- the same path with ``.json``: ``{"files": [...], "skipped": [...],
  "step": ..., "workdir": ..., "images": ...}``; ``files[i]`` is the path,
  relative to ``--images``, of the image of row i.

Images are found recursively and preprocessed as the run's training images
(folder_embedding.py). A file that cannot be decoded stops the command with
one message naming it, and nothing is written; ``--skip_bad_files`` embeds
the others and lists the skipped ones in a warning and in the JSON.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from proxy_nca_jax import quiet_logs  # noqa: E402
from proxy_nca_jax.evaluation import folder_embedding  # noqa: E402
from proxy_nca_jax.training import workdirs  # noqa: E402

_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Workdir of a training run (config.json, checkpoints/)."
)
_IMAGES = flags.DEFINE_string(
  "images", None, "Folder of images (searched recursively)."
)
_OUT = flags.DEFINE_string(
  "out", None, "Embeddings file (.npy); the file list goes beside (.json)."
)
_SKIP_BAD_FILES = flags.DEFINE_bool(
  "skip_bad_files",
  False,
  "Leave files that cannot be decoded out (warning) instead of failing.",
)
flags.mark_flags_as_required(["workdir", "images", "out"])


def write_embeddings(
  out: str,
  embeddings: np.ndarray,
  files: list[str],
  skipped: list[tuple[str, str]],
  **info,
) -> str:
  """Writes ``out`` (.npy) and its file list (.json); returns the latter."""
  listing = os.path.splitext(out)[0] + ".json"
  parent = os.path.dirname(out)
  if parent:
    tf.io.gfile.makedirs(parent)
  with tf.io.gfile.GFile(out, "wb") as f:
    np.save(f, embeddings.astype(np.float32))
  record = {
    "files": files,
    "skipped": [{"file": name, "reason": why} for name, why in skipped],
    **info,
  }
  with tf.io.gfile.GFile(listing, "w") as f:
    f.write(json.dumps(record, indent=1) + "\n")
  return listing


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  quiet_logs.quiet_libraries()
  out = _OUT.value
  try:
    if not out.endswith(".npy"):
      raise ValueError(f"--out={out} must name a .npy file.")
    embeddings, files, skipped, step = folder_embedding.embed_folder(
      _WORKDIR.value, _IMAGES.value, skip_bad_files=_SKIP_BAD_FILES.value
    )
  except (FileNotFoundError, ValueError) as error:
    # Missing or empty folder, undecodable files, not a workdir: one line.
    sys.stderr.write(f"error: {error}\n")
    sys.exit(1)
  if skipped:
    logging.warning(
      "Skipped %d file(s) that cannot be decoded: %s",
      len(skipped),
      "; ".join(f"{name} ({why})" for name, why in skipped),
    )
  listing = write_embeddings(
    out,
    embeddings,
    files,
    skipped,
    step=step,
    workdir=workdirs.absolute(_WORKDIR.value),
    images=os.path.abspath(_IMAGES.value),
  )
  sys.stdout.write(
    f"wrote {out} ({embeddings.shape[0]} x {embeddings.shape[1]}) and "
    f"{listing}\n"
  )


if __name__ == "__main__":
  app.run(main)
