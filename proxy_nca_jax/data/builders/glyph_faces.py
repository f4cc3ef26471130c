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
"""Typefaces, glyph rendering and the honesty rules of the GLYPHS-ZS data.

A face is one font of a font file (a `.ttc`/`.otc` collection holds
several). A face draws a character only if

1. its cmap maps the code point to a glyph (read with fontTools),
2. the rendered glyph has ink (some pixel of the large rendering reaches
   `SOLID_INK`), and
3. the final image differs from the face's missing-glyph (.notdef) image.

Faces whose renderings of a probe set of characters are identical (one file
under two names, collection members or derived fonts with the same
outlines) are merged into one group; a class then holds at most one image
per group, and exact duplicate images of one character from different groups
are dropped as well, so no class holds two identical images.

Images are white ink on black, uint8 (size, size): the glyph is rendered at
`render_size` pixels per em, cropped to its ink bounding box, scaled (aspect
kept) so that its longer side spans `size - 2 * margin` pixels and pasted in
the centre.
"""

import dataclasses
import os
from collections.abc import Iterator, Sequence

import numpy as np
from absl import logging
from fontTools import ttLib
from PIL import Image, ImageDraw, ImageFont

from proxy_nca_jax import errors

FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")
# A rendering whose brightest pixel is below this has no stroke: blank.
SOLID_INK = 128


@dataclasses.dataclass(frozen=True)
class Face:
  """One font of a font file.

  Attributes:
    path: the font file (absolute, symbolic links resolved).
    index: the font's index in a collection (0 for a single font).
    name: `full name (file#index)`, unique among faces.
  """

  path: str
  index: int
  name: str


def find_font_files(font_dirs: Sequence[str]) -> tuple[str, ...]:
  """Returns the font files under `font_dirs`, resolved, sorted, unique.

  Args:
    font_dirs: folders searched recursively; missing ones are skipped.

  Returns:
    Real paths of the files ending in one of `FONT_SUFFIXES` (any case).
  """
  found = set()
  for folder in font_dirs:
    for root, _, names in os.walk(folder):
      for name in names:
        if name.lower().endswith(FONT_SUFFIXES):
          found.add(os.path.realpath(os.path.join(root, name)))
  return tuple(sorted(found))


def _fonts_of(path: str) -> list[ttLib.TTFont]:
  if path.lower().endswith((".ttc", ".otc")):
    return list(ttLib.TTCollection(path, lazy=True).fonts)
  return [ttLib.TTFont(path, lazy=True)]


def read_faces(
  font_files: Sequence[str], first: int, last: int
) -> list[tuple[Face, frozenset[int]]]:
  """Reads the faces of `font_files` and the code points their cmaps cover.

  Args:
    font_files: font files, in the order faces are to be listed.
    first: first code point of interest.
    last: last code point of interest (inclusive).

  Returns:
    (face, covered code points in [first, last]) for every face covering at
    least one, in file order then collection order.

  Raises:
    ValueError: naming the file, if fontTools cannot read it.
  """
  faces = []
  for path in font_files:
    real = os.path.realpath(path)
    try:
      fonts = _fonts_of(real)
    except Exception as e:  # fontTools raises many types on bad files.
      raise errors.InvalidInputError(
        f"{path}: not a readable font file ({e})."
      ) from e
    for index, font in enumerate(fonts):
      cmap = font.getBestCmap() or {}
      covered = frozenset(c for c in cmap if first <= c <= last)
      if not covered:
        continue
      full_name = font["name"].getBestFullName() or "?"
      name = f"{full_name} ({os.path.basename(real)}#{index})"
      faces.append((Face(real, index, name), covered))
  return faces


def _missing_code_point(covered: frozenset[int]) -> int:
  """A private-use code point outside `covered`: renders as .notdef."""
  for code_point in range(0xE000, 0xF900):
    if code_point not in covered:
      return code_point
  raise errors.InvalidInputError("The face maps every private-use code point.")


class Renderer:
  """Renders the glyphs of one face to fixed-size centred images.

  Attributes:
    face: the face.
    notdef: its missing-glyph image, uint8 (size, size), or None if blank.
  """

  def __init__(
    self,
    face: Face,
    cmap: frozenset[int],
    *,
    size: int,
    margin: int,
    render_size: int,
  ):
    """Opens the face.

    Args:
      face: the face to render.
      cmap: code points its cmap covers (to find one it does not).
      size: side of the output images, pixels.
      margin: pixels left blank around the ink's bounding box on its longer
        side.
      render_size: pixels per em of the rendering before scaling.
    """
    if size - 2 * margin < 1:
      raise errors.InvalidInputError(
        f"margin={margin} leaves no room in size={size}."
      )
    self.face = face
    self._size = size
    self._margin = margin
    # The basic layout maps one code point to one glyph, with or without
    # libraqm: a missing code point is drawn as glyph 0 (.notdef).
    self._font = ImageFont.truetype(
      face.path,
      size=render_size,
      index=face.index,
      layout_engine=ImageFont.Layout.BASIC,
    )
    self.notdef = self._draw(chr(_missing_code_point(cmap)))

  def _draw(self, text: str) -> np.ndarray | None:
    try:
      left, top, right, bottom = self._font.getbbox(text)
      if right <= left or bottom <= top:
        return None
      canvas = Image.new("L", (right - left, bottom - top), 0)
      ImageDraw.Draw(canvas).text(
        (-left, -top), text, fill=255, font=self._font
      )
    except OSError as e:  # FreeType rejects the glyph (e.g. bad hinting).
      logging.log_first_n(
        logging.WARNING,
        "%s: U+%04X not drawn (%s).",
        20,
        self.face.name,
        ord(text),
        e,
      )
      return None
    ink = np.asarray(canvas)
    if ink.max(initial=0) < SOLID_INK:
      return None
    rows = np.flatnonzero(ink.max(axis=1))
    cols = np.flatnonzero(ink.max(axis=0))
    crop = canvas.crop((cols[0], rows[0], cols[-1] + 1, rows[-1] + 1))
    inner = self._size - 2 * self._margin
    scale = inner / max(crop.width, crop.height)
    width = max(1, round(crop.width * scale))
    height = max(1, round(crop.height * scale))
    crop = crop.resize((width, height), Image.Resampling.LANCZOS)
    image = Image.new("L", (self._size, self._size), 0)
    image.paste(crop, ((self._size - width) // 2, (self._size - height) // 2))
    return np.asarray(image)

  def render(self, code_point: int) -> np.ndarray | None:
    """The glyph's image, or None if it is blank or the .notdef image.

    The caller checks the cmap; this checks the two rendering rules.

    Args:
      code_point: the character.

    Returns:
      uint8 (size, size), ink 255 on background 0, or None.
    """
    image = self._draw(chr(code_point))
    if image is None:
      return None
    if self.notdef is not None and np.array_equal(image, self.notdef):
      return None
    return image


@dataclasses.dataclass
class FaceGroup:
  """Faces that render the probe characters identically.

  Attributes:
    members: (renderer, covered code points), the first names the group.
  """

  members: list[tuple[Renderer, frozenset[int]]]

  @property
  def name(self) -> str:
    return self.members[0][0].face.name

  def render(self, code_point: int) -> np.ndarray | None:
    """The first valid image of `code_point` among the members, or None."""
    for renderer, covered in self.members:
      if code_point in covered:
        image = renderer.render(code_point)
        if image is not None:
          return image
    return None


def _probe_images(
  renderer: Renderer, covered: frozenset[int], probes: Sequence[int]
) -> dict[int, bytes]:
  images = {}
  for code_point in probes:
    if code_point in covered:
      image = renderer.render(code_point)
      images[code_point] = b"" if image is None else image.tobytes()
  return images


def group_faces(
  faces: Sequence[tuple[Face, frozenset[int]]],
  *,
  probes: Sequence[int],
  min_common_probes: int,
  size: int,
  margin: int,
  render_size: int,
) -> list[FaceGroup]:
  """Merges faces that render the probe characters identically.

  A face joins the first group whose first face renders every probe that
  both cover to the same image (or both to no image), at least
  `min_common_probes` of them to an image; otherwise it starts a group.

  Args:
    faces: (face, covered code points), as from `read_faces`.
    probes: the probe code points.
    min_common_probes: fewest common probes to decide that two faces match.
    size: image side, pixels.
    margin: see `Renderer`.
    render_size: see `Renderer`.

  Returns:
    The groups, in the order of their first faces.
  """
  groups: list[tuple[FaceGroup, dict[int, bytes]]] = []
  for face, covered in faces:
    renderer = Renderer(
      face, covered, size=size, margin=margin, render_size=render_size
    )
    images = _probe_images(renderer, covered, probes)
    for group, first_images in groups:
      common = images.keys() & first_images.keys()
      drawn = sum(1 for c in common if images[c])
      if drawn >= min_common_probes and all(
        images[c] == first_images[c] for c in common
      ):
        logging.info("Face %s renders as %s: merged.", face.name, group.name)
        group.members.append((renderer, covered))
        break
    else:
      groups.append((FaceGroup([(renderer, covered)]), images))
  return [group for group, _ in groups]


def drawings(
  groups: Sequence[FaceGroup], code_point: int
) -> list[tuple[str, np.ndarray]]:
  """The distinct images of one character across the face groups.

  Args:
    groups: the face groups, in order.
    code_point: the character.

  Returns:
    (group name, uint8 image (size, size)) for each group with a valid
    image that no earlier group drew identically.
  """
  seen = set()
  found = []
  for group in groups:
    image = group.render(code_point)
    if image is None:
      continue
    key = image.tobytes()
    if key not in seen:
      seen.add(key)
      found.append((group.name, image))
  return found


def select_characters(
  groups: Sequence[FaceGroup],
  code_points: Sequence[int],
  *,
  min_faces: int,
  num_classes: int,
) -> Iterator[tuple[int, list[tuple[str, np.ndarray]]]]:
  """The first `num_classes` characters drawn distinctly by `min_faces`.

  Characters are tried in the order of `code_points`; those that fewer than
  `min_faces` groups cover (by cmap) are skipped without rendering.

  Args:
    groups: the face groups.
    code_points: candidate characters, in order.
    min_faces: fewest distinct images a class needs.
    num_classes: how many characters to yield at most.

  Yields:
    (code point, its drawings), at most `num_classes` of them.
  """
  found = 0
  for code_point in code_points:
    if found == num_classes:
      return
    covering = sum(
      any(code_point in covered for _, covered in group.members)
      for group in groups
    )
    if covering < min_faces:
      continue
    images = drawings(groups, code_point)
    if len(images) >= min_faces:
      found += 1
      yield code_point, images
