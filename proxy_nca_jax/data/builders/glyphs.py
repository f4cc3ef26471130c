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
"""GLYPHS-ZS: Han characters across typefaces (tfds name `glyphs`).

One class is one character; its images are the character drawn by distinct
typefaces (rules in `glyph_faces`). Candidates are the code points of
[first_code_point, last_code_point] (default: CJK Unified Ideographs,
U+4E00-U+9FFF) visited in a fixed spread order, `first + (i * STRIDE) mod n`
for i = 0, 1, ..., so that the classes cover the whole range (Unicode orders
ideographs by radical) rather than its first radicals. The first
`num_classes` candidates drawn distinctly by at least `min_faces` face groups
are the classes. Sorted by code point, the even positions are the 'train'
split (labels 0 .. ceil(n/2) - 1, in code point order) and the odd positions
the 'test' split (the remaining labels): class-disjoint and deterministic.

The builder's parameters (font files, code range, counts, image geometry)
form its `GlyphsConfig`, whose name carries a digest of them: another font
set or size is another dataset folder. Build one from the `config.input.glyphs`
section with `builder_config`:

  builder = tfds.builder(
      'glyphs', config=glyphs.builder_config(config.input.glyphs),
      data_dir=data_dir)
  builder.download_and_prepare()
"""

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Sequence

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from proxy_nca_jax import errors
from proxy_nca_jax.data.builders import glyph_faces, grey_png

# Multiplier of the spread order: a prime, so that it visits every code point
# of any range shorter than it exactly once.
STRIDE = 7919


class NoFontsError(errors.MissingFileError):
  """No usable font file: none configured, found or readable."""


@dataclasses.dataclass(eq=False, repr=False)
class GlyphsConfig(tfds.core.BuilderConfig):
  """Everything the rendered dataset depends on.

  Attributes:
    font_files: font files (`.ttf`, `.otf`, `.ttc`, `.otc`), in the order
      their faces are grouped and drawn.
    first_code_point: first candidate character.
    last_code_point: last candidate character (inclusive).
    min_faces: fewest distinct images a character needs to be a class.
    num_classes: number of classes.
    image_size: side of the square images, pixels.
    margin: blank pixels around the ink on its longer side.
    render_size: pixels per em of the rendering before scaling.
    probe_stride: every probe_stride-th code point of the range is a probe
      for merging identical faces.
    min_common_probes: fewest drawn probes two faces must share to merge.
  """

  font_files: tuple[str, ...] = ()
  first_code_point: int = 0x4E00
  last_code_point: int = 0x9FFF
  min_faces: int = 20
  num_classes: int = 2000
  image_size: int = 48
  margin: int = 4
  render_size: int = 64
  probe_stride: int = 64
  min_common_probes: int = 16


def spread_order(first: int, last: int) -> list[int]:
  """The code points of [first, last] in the builder's visiting order.

  Args:
    first: first code point.
    last: last code point (inclusive), at least `first`.

  Returns:
    `first + (i * STRIDE) % n` for i in range(n), n = last - first + 1.
  """
  n = last - first + 1
  if n % STRIDE == 0:
    raise errors.InvalidInputError(
      f"The range length {n} must not be a multiple of STRIDE."
    )
  return [first + (i * STRIDE) % n for i in range(n)]


def font_files(glyphs_config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The font files a `config.input.glyphs` section names.

  Args:
    glyphs_config: reads `font_files` (explicit files, used when not empty)
      and `font_dirs` (searched recursively otherwise).

  Returns:
    Real paths, in the order given or sorted when found in folders.

  Raises:
    NoFontsError: a named file is missing, or no folder holds a font file;
      the message says how to install the default fonts.
  """
  hint = (
    "Install the default fonts with `make glyphs-fonts` (Debian packages "
    "listed in the Makefile's GLYPH_FONT_PACKAGES), or name font files with "
    "--config.input.glyphs.font_files or folders with "
    "--config.input.glyphs.font_dirs."
  )
  if glyphs_config.font_files:
    files = tuple(glyphs_config.font_files)
    if missing := [f for f in files if not os.path.isfile(f)]:
      raise NoFontsError(f"Font files not found: {', '.join(missing)}. {hint}")
    return tuple(os.path.realpath(f) for f in files)
  files = glyph_faces.find_font_files(glyphs_config.font_dirs)
  if not files:
    raise NoFontsError(
      "No font file (.ttf, .otf, .ttc, .otc) in input.glyphs.font_dirs="
      f"{tuple(glyphs_config.font_dirs)}. {hint}"
    )
  return files


def builder_config(glyphs_config: ml_collections.ConfigDict) -> GlyphsConfig:
  """The builder config of a `config.input.glyphs` section.

  Args:
    glyphs_config: the section (see configs/glyphs.py).

  Returns:
    A `GlyphsConfig` named `f{min_faces}-n{num_classes}-{digest}`, the
    digest covering every field and each font file's path and size.

  Raises:
    NoFontsError: see `font_files`.
  """
  files = font_files(glyphs_config)
  fields = {
    "font_files": files,
    "first_code_point": int(glyphs_config.first_code_point),
    "last_code_point": int(glyphs_config.last_code_point),
    "min_faces": int(glyphs_config.min_faces),
    "num_classes": int(glyphs_config.num_classes),
    "image_size": int(glyphs_config.image_size),
    "margin": int(glyphs_config.margin),
    "render_size": int(glyphs_config.render_size),
    "probe_stride": int(glyphs_config.probe_stride),
    "min_common_probes": int(glyphs_config.min_common_probes),
  }
  identity = dict(fields, sizes=[os.path.getsize(f) for f in files])
  digest = hashlib.sha256(
    json.dumps(identity, sort_keys=True).encode()
  ).hexdigest()[:12]
  return GlyphsConfig(
    name=f"f{fields['min_faces']}-n{fields['num_classes']}-{digest}",
    description=f"{len(files)} font files, digest {digest}.",
    **fields,
  )


def select_classes(
  config: GlyphsConfig,
) -> tuple[
  list[tuple[int, list[tuple[str, np.ndarray]]]], list[glyph_faces.FaceGroup]
]:
  """Renders and selects the classes of `config`.

  Args:
    config: the builder config.

  Returns:
    (classes, face groups): (code point, [(face group name, uint8 image
    (size, size))]) for the `num_classes` classes, sorted by code point, and
    the face groups they were drawn from.

  Raises:
    NoFontsError: no face covers the code range.
    ValueError: fewer than `num_classes` characters qualify; the message
      gives the number that do.
  """
  first, last = config.first_code_point, config.last_code_point
  if not first <= last:
    raise errors.InvalidInputError(
      f"first_code_point {first:#x} > last_code_point {last:#x}"
    )
  faces = glyph_faces.read_faces(config.font_files, first, last)
  if not faces:
    raise NoFontsError(
      f"No face of the {len(config.font_files)} font files covers "
      f"U+{first:04X}-U+{last:04X}."
    )
  geometry = {
    "size": config.image_size,
    "margin": config.margin,
    "render_size": config.render_size,
  }
  groups = glyph_faces.group_faces(
    faces,
    probes=range(first, last + 1, config.probe_stride),
    min_common_probes=config.min_common_probes,
    **geometry,
  )
  logging.info("%d faces in %d groups.", len(faces), len(groups))
  classes = list(
    glyph_faces.select_characters(
      groups,
      spread_order(first, last),
      min_faces=config.min_faces,
      num_classes=config.num_classes,
    )
  )
  if len(classes) < config.num_classes:
    raise errors.InvalidInputError(
      f"Only {len(classes)} characters of U+{first:04X}-U+{last:04X} are "
      f"drawn distinctly by at least min_faces={config.min_faces} of the "
      f"{len(groups)} face groups, fewer than num_classes="
      f"{config.num_classes}: lower input.glyphs.num_classes to at most "
      f"{len(classes)} or input.glyphs.min_faces, or add fonts."
    )
  return sorted(classes), groups


class Glyphs(tfds.core.GeneratorBasedBuilder):
  """Han characters rendered by many typefaces; one class per character."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    if not isinstance(config, GlyphsConfig):
      raise errors.InvalidInputError(
        "The glyphs builder needs config=glyphs.builder_config(...) (see "
        "proxy_nca_jax/data/builders/glyphs.py)."
      )
    size = config.image_size
    return tfds.core.DatasetInfo(
      builder=self,
      description=(
        "GLYPHS-ZS: CJK characters rendered by distinct typefaces, "
        f"{size}x{size} grey levels (ink 255 on 0), centred on the ink with "
        f"a {config.margin}-pixel margin. 'train' and 'test' hold disjoint "
        "classes."
      ),
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(size, size, 1)),
          "label": tfds.features.ClassLabel(num_classes=config.num_classes),
          "code_point": tfds.features.Scalar(dtype=np.int64),
          "face": tfds.features.Text(),
        }
      ),
      supervised_keys=("image", "label"),
      # Filled while building: 'font_files', 'faces' and 'face_groups'
      # (group name -> names of its faces).
      metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(
    self, dl_manager: tfds.download.DownloadManager
  ) -> dict[str, Iterator[tuple[int, dict[str, object]]]]:
    del dl_manager  # Everything comes from the font files.
    classes, groups = select_classes(self.builder_config)
    self.info.metadata["font_files"] = len(self.builder_config.font_files)
    self.info.metadata["faces"] = sum(len(g.members) for g in groups)
    self.info.metadata["face_groups"] = {
      g.name: [r.face.name for r, _ in g.members] for g in groups
    }
    train, test = classes[0::2], classes[1::2]
    return {
      "train": self._generate_examples(train, first_label=0),
      "test": self._generate_examples(test, first_label=len(train)),
    }

  def _generate_examples(
    self,
    classes: Sequence[tuple[int, list[tuple[str, np.ndarray]]]],
    first_label: int,
  ) -> Iterator[tuple[int, dict[str, object]]]:
    size = self.builder_config.image_size
    shape = (size, size, 1)
    for label, (code_point, images) in enumerate(classes, first_label):
      for position, (face, image) in enumerate(images):
        yield (
          code_point * 10_000 + position,
          {
            "image": grey_png.encode(image, shape),
            "label": label,
            "code_point": code_point,
            "face": face,
          },
        )
