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
r"""Indexes a folder of images into a gallery for searching.

  python -m proxy_nca_jax.index --workdir=W (or --model=FILE.npz) \
      --images=DIR --out=GALLERY [--skip_bad_files]

Embeds every image file under DIR (recursively) with the run's newest
checkpoint or an exported model, logging progress and the time left, and
writes the gallery folder (deployment/gallery.py): the embeddings (float32)
and ``gallery.json`` (files, class-per-folder labels when every image is in
a subfolder, the model's spec, counts and checksums that search checks).
A new gallery replaces the old one atomically, and one index at a time
writes a gallery (a lock). Interrupted, the same command continues where
it stopped (progress is kept every --part_size files or 30 seconds); run
again after adding images, it embeds only the new ones; a damaged gallery
is rebuilt. A file that cannot be read or decoded (a dangling symbolic
link, a corrupt image) stops it with a message naming it (what was
embedded is kept); ``--skip_bad_files`` leaves such files out.
"""

import sys

import jax
from absl import flags, logging

from proxy_nca_jax import command_line, deployment, terminal
from proxy_nca_jax.data import image_files
from proxy_nca_jax.deployment import gallery

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a training run.")
_MODEL = flags.DEFINE_string(
  "model", None, "An exported model (.npz), instead of --workdir."
)
_IMAGES = flags.DEFINE_string(
  "images", None, "Folder of images (searched recursively)."
)
_OUT = flags.DEFINE_string("out", None, "The gallery folder to write.")
_SKIP_BAD_FILES = flags.DEFINE_bool(
  "skip_bad_files",
  False,
  "Leave files that cannot be read or decoded out (listed) instead of failing.",
)
_BATCH_SIZE = flags.DEFINE_integer(
  "batch_size", gallery.BATCH_SIZE, "Images per call of the network."
)
_PART_SIZE = flags.DEFINE_integer(
  "part_size",
  gallery.PART_SIZE,
  "Files per resumable part, also kept every 30 s (an interrupted index "
  "loses at most one).",
)
_MAX_IMAGE_PIXELS = flags.DEFINE_integer(
  "max_image_pixels",
  image_files.MAX_IMAGE_PIXELS,
  "Images with more pixels are refused (named, or skipped with "
  "--skip_bad_files) instead of decoded.",
)
flags.mark_flags_as_required(["images", "out"])


def main() -> None:
  embed, spec, source = deployment.open_embedder(
    workdir=_WORKDIR.value, model=_MODEL.value
  )
  done = gallery.build(
    jax.jit(embed),
    spec,
    source,
    _IMAGES.value,
    _OUT.value,
    skip_bad_files=_SKIP_BAD_FILES.value,
    batch_size=_BATCH_SIZE.value,
    part_size=_PART_SIZE.value,
    max_image_pixels=_MAX_IMAGE_PIXELS.value,
  )
  skipped = done.record["skipped"]
  if skipped:
    logging.warning(
      "Skipped %d file(s) that cannot be read or decoded: %s",
      len(skipped),
      terminal.printable(
        "; ".join(f"{s['file']} ({s['reason']})" for s in skipped)
      ),
    )
  classes = done.classes
  sys.stdout.write(
    f"wrote {done.path}: {done.embeddings.shape[0]} images x "
    f"{done.embeddings.shape[1]}-d"
    + (f", {len(classes)} classes" if classes else ", no class folders")
    + f"; model {spec.describe()}\n"
  )


if __name__ == "__main__":
  command_line.run(main)
