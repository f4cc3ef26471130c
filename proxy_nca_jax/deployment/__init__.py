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
"""From a trained run to use: export the embedder, index a gallery, search.

- embedder.py: the embedder as one function of uint8 pixels, and its spec;
- exported_model.py: that function saved with ``jax.export`` (or as a TF
  SavedModel) and loaded back;
- gallery.py: a folder of images embedded once, resumably;
- gallery_files.py: a gallery's files, published atomically and checked;
- neighbours.py: queries searched against a gallery, exactly.

The commands are ``python -m proxy_nca_jax.export``, ``.index`` and
``.search``.
"""

import os

from proxy_nca_jax import errors
from proxy_nca_jax.deployment import embedder, exported_model


def open_embedder(
  *, workdir: str | None = None, model: str | None = None
) -> tuple[embedder.EmbedFn, embedder.EmbedderSpec, dict[str, str]]:
  """The embedder of a training run or of an exported file (one of them).

  Returns:
    (embed function, its spec, {"workdir": ...} or {"model": ...}).

  Raises:
    ValueError: neither or both given.
    FileNotFoundError: no such run or file.
  """
  if (workdir is None) == (model is None):
    raise errors.InvalidInputError(
      "Give either --workdir (a training run) or --model "
      "(a file written by python -m proxy_nca_jax.export)."
    )
  if model is not None:
    embed, spec = exported_model.load(model)
    return embed, spec, {"model": os.path.abspath(model)}
  embed, spec = embedder.from_workdir(workdir)
  return embed, spec, {"workdir": spec.workdir}
