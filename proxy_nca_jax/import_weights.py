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
r"""Converts pretrained weights from PyTorch for ``config.model.pretrained``.

  python -m proxy_nca_jax.import_weights --arch=resnet50 \
      --torch_weights=resnet50-0676ba61.pth --out=weights/resnet50

  python -m proxy_nca_jax.import_weights --arch=bn_inception \
      --torch_weights=bn_inception-52deb4733.pth --out=weights/bn_inception

  python -m proxy_nca_jax.import_weights --arch=vit_s14 \
      --torch_weights=dinov2_vits14_pretrain.pth --out=weights/dinov2_s14

  python -m proxy_nca_jax.import_weights --arch=vit_s16 \
      --torch_weights=model.safetensors --normalization=inception \
      --out=weights/vit_s16_augreg

A ViT's layout (timm, DINOv2 or OpenAI CLIP) is told by the file's keys
unless --layout names it; timm's ViTs need --normalization (their
``pretrained_cfg`` mean and std: "inception" for 0.5, "imagenet"). The
command prints the ``--config.model.vit.*`` flags the weights need.

Needs torch (pip install -e '.[weights]'); training from ``--out`` then
needs no torch: ``--config.model.pretrained=weights/resnet50``. A file of
another architecture, or one that would run code when unpickled, stops with
one message and writes nothing.
"""

import sys

from absl import flags

from proxy_nca_jax import command_line, config_schema
from proxy_nca_jax.models import inputs, pretrained, vit

_ARCH = flags.DEFINE_enum(
  "arch", None, pretrained.ARCHS, "Architecture of the weights file."
)
_TORCH_WEIGHTS = flags.DEFINE_string(
  "torch_weights", None, "State dict to convert (.pth, .pt, .safetensors)."
)
_OUT = flags.DEFINE_string(
  "out", None, "Folder to create for the converted weights."
)
_LAYOUT = flags.DEFINE_enum(
  "layout",
  None,
  vit.LAYOUTS,
  "ViTs: the weights' family (default: told by the keys).",
)
_NORMALIZATION = flags.DEFINE_enum(
  "normalization",
  None,
  tuple(inputs.NORMALIZATIONS),
  "ViTs: the input mean/std the weights were trained with (default: the "
  "layout's; timm's must be given).",
)
flags.mark_flags_as_required(["arch", "torch_weights", "out"])


def vit_flags(metadata: dict) -> list[str]:
  """The config flags a ViT's weights need, where the defaults differ."""
  defaults = config_schema.base_config().model.vit
  return [
    f"--config.model.vit.{field}={metadata['vit'][field]}"
    for field in vit.NETWORK_OPTIONS
    if metadata["vit"][field] != defaults[field]
  ]


def main() -> None:
  metadata = pretrained.import_weights(
    _ARCH.value,
    _TORCH_WEIGHTS.value,
    _OUT.value,
    layout=_LAYOUT.value,
    normalization=_NORMALIZATION.value,
  )
  train_flags = [f"--config.model.name={metadata['arch']}"]
  described = f"the {metadata['arch']} backbone"
  if "vit" in metadata:
    train_flags += vit_flags(metadata)
    described += f" ({metadata['layout']} layout)"
  train_flags.append(f"--config.model.pretrained={_OUT.value}")
  preprocessing = metadata["preprocessing"]
  sys.stdout.write(
    f"Wrote {described} ({metadata['num_params']:,} parameters, sha256 "
    f"{metadata['sha256'][:12]}...) to {_OUT.value}; it expects "
    f"{preprocessing['image_size']}-px {preprocessing['channel_order']} "
    f"images normalised with mean {preprocessing['mean']} and std "
    f"{preprocessing['std']}. Train with {' '.join(train_flags)}\n"
  )


if __name__ == "__main__":
  command_line.run(main)
