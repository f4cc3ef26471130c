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
r"""Converts ImageNet weights from PyTorch for ``config.model.pretrained``.

  python -m proxy_nca_jax.import_weights --arch=resnet50 \
      --torch_weights=resnet50-0676ba61.pth --out=weights/resnet50

  python -m proxy_nca_jax.import_weights --arch=bn_inception \
      --torch_weights=bn_inception-52deb4733.pth --out=weights/bn_inception

Needs torch (pip install -e '.[weights]'); training from ``--out`` then
needs no torch: ``--config.model.pretrained=weights/resnet50``. A file of
another architecture, or one that would run code when unpickled, stops with
one message and writes nothing.
"""

import sys

from absl import flags

from proxy_nca_jax import command_line
from proxy_nca_jax.models import pretrained

_ARCH = flags.DEFINE_enum(
  "arch", None, pretrained.ARCHS, "Architecture of the weights file."
)
_TORCH_WEIGHTS = flags.DEFINE_string(
  "torch_weights", None, "PyTorch state dict (.pth) to convert."
)
_OUT = flags.DEFINE_string(
  "out", None, "Folder to create for the converted weights."
)
flags.mark_flags_as_required(["arch", "torch_weights", "out"])


def main() -> None:
  metadata = pretrained.import_weights(
    _ARCH.value, _TORCH_WEIGHTS.value, _OUT.value
  )
  sys.stdout.write(
    f"Wrote the {metadata['arch']} backbone ({metadata['num_params']:,} "
    f"parameters, sha256 {metadata['sha256'][:12]}...) to {_OUT.value}; "
    f"train with --config.model.pretrained={_OUT.value}\n"
  )


if __name__ == "__main__":
  command_line.run(main)
