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
"""Tiny generated TrueType fonts for the glyph tests (no installed fonts).

Every glyph is a union of axis-aligned rectangles on a 1000-unit em, given
as (x0, y0, x1, y1) in font units (y up). `pattern(code_point, style)` gives
each character of each style a distinct, left-right asymmetric drawing.
"""

import pathlib
from collections.abc import Mapping, Sequence

from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen

Rect = tuple[int, int, int, int]
# The .notdef glyph: a hollow box, as most fonts draw it.
NOTDEF: tuple[Rect, ...] = (
  (100, 0, 600, 60),
  (100, 640, 600, 700),
  (100, 0, 160, 700),
  (540, 0, 600, 700),
)


def pattern(code_point: int, style: int) -> tuple[Rect, ...]:
  """A drawing of `code_point` in `style`: a bar, an L and a bit pattern.

  Args:
    code_point: the character (its low 6 bits choose squares of a grid).
    style: 0, 1, 2, ...: shifts and thickens the strokes.

  Returns:
    Rectangles; the long vertical bar on the left makes it asymmetric.
  """
  t = 60 + 40 * style
  rects = [(100, 0, 100 + t, 800), (100, 0, 700, t)]
  for bit in range(6):
    if code_point >> bit & 1:
      x = 300 + 150 * (bit % 3) + 20 * style
      y = 250 + 250 * (bit // 3)
      rects.append((x, y, x + 100, y + 100))
  return tuple(rects)


def _glyph(rects: Sequence[Rect]):
  pen = TTGlyphPen(None)
  for x0, y0, x1, y1 in rects:
    # Clockwise outer contours (TrueType's filled direction).
    pen.moveTo((x0, y0))
    pen.lineTo((x0, y1))
    pen.lineTo((x1, y1))
    pen.lineTo((x1, y0))
    pen.closePath()
  return pen.glyph()


def write_font(
  path: pathlib.Path,
  family: str,
  glyphs: Mapping[int, Sequence[Rect]],
) -> pathlib.Path:
  """Writes a TrueType font drawing `glyphs` (code point -> rectangles).

  An empty rectangle list makes a blank glyph that the cmap still maps.

  Args:
    path: the `.ttf` file to write.
    family: the family name stored in the font.
    glyphs: the characters and their drawings.

  Returns:
    `path`.
  """
  names = {cp: f"uni{cp:04X}" for cp in glyphs}
  order = [".notdef", *names.values()]
  builder = FontBuilder(1000, isTTF=True)
  builder.setupGlyphOrder(order)
  builder.setupCharacterMap(names)
  outlines = {".notdef": _glyph(NOTDEF)}
  outlines.update({names[cp]: _glyph(r) for cp, r in glyphs.items()})
  builder.setupGlyf(outlines)
  builder.setupHorizontalMetrics({name: (1000, 0) for name in order})
  builder.setupHorizontalHeader(ascent=880, descent=-120)
  builder.setupNameTable({"familyName": family, "styleName": "Regular"})
  builder.setupOS2(sTypoAscender=880, usWinAscent=880, usWinDescent=120)
  builder.setupPost()
  builder.save(str(path))
  return path
