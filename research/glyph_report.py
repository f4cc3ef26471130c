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
"""Statistics and a sample sheet of the GLYPHS-ZS dataset.

Prepares the dataset of a config if needed, then prints the counts (font
files, faces, face groups, classes and images per split, images per class),
the pixel mean and standard deviation of the 'train' split, and writes a PNG
with one row per face group and one column per class for a few classes.

  python -m research.glyph_report --config=configs/glyphs.py \\
      --sheet=docs/glyphs_sample.png
"""

import json
import sys

from absl import app, flags
from ml_collections import config_flags
from PIL import Image

from proxy_nca_jax.data import sources
from research import glyph_statistics

_CONFIG = config_flags.DEFINE_config_file("config", None, "GLYPHS-ZS config.")
_SHEET = flags.DEFINE_string("sheet", None, "Where to write the sample PNG.")
_SHEET_CLASSES = flags.DEFINE_integer("sheet_classes", 12, "Sheet columns.")
_SHEET_FACES = flags.DEFINE_integer("sheet_faces", 40, "Most sheet rows.")


def main(argv):
  del argv
  config = _CONFIG.value
  sources.prepare_dataset(config.input)
  builder = sources.prepared_builder(config.input)
  splits = {
    s: glyph_statistics.read_split(builder, s) for s in ("train", "test")
  }
  stats = glyph_statistics.statistics(builder, splits)
  sys.stdout.write(json.dumps(stats, indent=2) + "\n")
  if _SHEET.value:
    sheet = glyph_statistics.sample_sheet(
      splits["train"], _SHEET_CLASSES.value, _SHEET_FACES.value
    )
    Image.fromarray(sheet).save(_SHEET.value)


if __name__ == "__main__":
  app.run(main)
