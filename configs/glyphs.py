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
"""GLYPHS-ZS: Proxy-NCA with convnet-S on Han characters across typefaces.

One class is one CJK character; its images are the character drawn by the
distinct typefaces of Debian's CJK font packages (48x48, see
proxy_nca_jax/data/builders/glyphs.py). Half of the classes train (one proxy
each), the other half are the never-seen test classes; the last
`NUM_VAL_CLASSES` train classes are held out for model selection.

Run (fonts first: `make glyphs-fonts` installs the Debian packages listed in
the Makefile's GLYPH_FONT_PACKAGES; the first run renders the dataset):

  python -m proxy_nca_jax.train --config=configs/glyphs.py \
      --workdir=workdirs/glyphs

Variants (``--config=configs/glyphs.py:VARIANT[,VARIANT]``):
  * ``triplet``: triplet loss with semi-hard mining, class-balanced batches
    (8 classes x 8 images), the baseline of the paper.
  * ``no_noto``: without the Noto CJK fonts (their many weights of one
    design make up 42% of the default images); another dataset, built on
    first use.
  * ``smoke``: a few steps on a small evaluation subset, for quick checks.

Any field can be overridden, e.g. ``--config.input.glyphs.min_faces=25``;
what the fields outside ``input.glyphs`` and ``input.augment`` mean:
proxy_nca_jax/config_schema.py.
"""

import ml_collections

from proxy_nca_jax import config_schema

# Folders of the fonts installed by the Makefile's GLYPH_FONT_PACKAGES.
_FONTS = "/usr/share/fonts"
FONT_DIRS = tuple(
  f"{_FONTS}/{folder}"
  for folder in (
    "opentype/ipaexfont-gothic",
    "opentype/ipaexfont-mincho",
    "opentype/ipafont-gothic",
    "opentype/ipafont-mincho",
    "opentype/noto",
    "truetype/aoyagi-kouzan-t",
    "truetype/aoyagi-soseki",
    "truetype/arphic",
    "truetype/arphic-bkai00mp",
    "truetype/arphic-bsmi00lp",
    "truetype/arphic-gbsn00lp",
    "truetype/arphic-gkai00mp",
    "truetype/babelstone",
    "truetype/baekmuk",
    "truetype/cns11643",
    "truetype/cwtex",
    "truetype/dejima-mincho",
    "truetype/droid",
    "truetype/hanazono",
    "truetype/horai-umefont",
    "truetype/ipamj",
    "truetype/kiloji",
    "truetype/klee",
    "truetype/konatu",
    "truetype/kouzan-mouhitsu",
    "truetype/lxgw-wenkai",
    "truetype/migmix",
    "truetype/motoya-l-cedar",
    "truetype/motoya-l-maruberi",
    "truetype/nanum",
    "truetype/oradano-mincho",
    "truetype/sawarabi-gothic",
    "truetype/sawarabi-mincho",
    "truetype/seto",
    "truetype/smiley-sans",
    "truetype/takao-gothic",
    "truetype/takao-mincho",
    "truetype/umeplus",
    "truetype/unfonts-core",
    "truetype/vlgothic",
    "truetype/wqy",
    "truetype/yozvox-yozfont",
    "truetype/yusei-magic",
  )
)
# Noto Sans/Serif CJK: 7 weights x 5 regions, 42% of the default images.
NOTO_DIR = f"{_FONTS}/opentype/noto"
VARIANTS = ("triplet", "no_noto", "smoke")
NUM_CLASSES = 2000
NUM_VAL_CLASSES = 100


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the GLYPHS-ZS config; ``arg`` names a variant (see above)."""
  config = config_schema.base_config()
  config.input.dataset = "glyphs"
  config.input.manual_dir = ""  # Unused: everything comes from the fonts.
  config.input.glyphs = ml_collections.ConfigDict()
  # Font files, in this order (empty: every font file under font_dirs,
  # sorted by path).
  config.input.glyphs.font_files = ()
  config.input.glyphs.font_dirs = FONT_DIRS
  # Candidate characters: CJK Unified Ideographs.
  config.input.glyphs.first_code_point = 0x4E00
  config.input.glyphs.last_code_point = 0x9FFF
  # A class needs this many distinct images (typeface groups).
  config.input.glyphs.min_faces = 20
  config.input.glyphs.num_classes = NUM_CLASSES
  config.input.glyphs.image_size = 48
  config.input.glyphs.margin = 4  # Pixels around the ink, longer side.
  config.input.glyphs.render_size = 64  # Pixels per em before scaling.
  # Faces rendering every 64th code point of the range identically (at
  # least 16 of them) are one face group.
  config.input.glyphs.probe_stride = 64
  config.input.glyphs.min_common_probes = 16
  # Labels 0..999 are the train classes (the builder's 'train' split),
  # 1000..1999 the test classes; the last train classes validate.
  half = (NUM_CLASSES + 1) // 2
  config.input.train_classes = tuple(range(half))
  config.input.test_classes = tuple(range(half, NUM_CLASSES))
  config.input.val_classes = tuple(range(half - NUM_VAL_CLASSES, half))
  config.input.shuffle_buffer = 50_000

  # Training augmentation (proxy_nca_jax/data/grey_augmentation.py): "glyphs" or
  # "none". Largest rotation and shear (degrees), scale range 1 +- scale,
  # largest shift (fraction of the side), largest stroke-width jitter
  # (fraction of the way to the 3x3 dilation or erosion).
  config.input.augmentation = "glyphs"
  config.input.augment = ml_collections.ConfigDict()
  config.input.augment.rotation_deg = 8.0
  config.input.augment.shear_deg = 8.0
  config.input.augment.scale = 0.1
  config.input.augment.translation = 0.06
  config.input.augment.stroke = 0.5

  # Chosen on the validation classes (300 steps, seed 0; docs/datasets.md,
  # GLYPHS-ZS tuning): scale 8 of {4, 8, 16, 32}, proxies 100x faster of
  # {10, 100, 300, 1000}. Validation MAP@R 0.697 against 0.412 with
  # FMNIST-ZS's 16 and 10x: with 900 proxies and 64 images a step, each
  # proxy is a positive about once in 14 steps and needs the larger rate.
  config.loss.scale = 8.0
  config.optimizer.proxy_lr_mult = 100.0

  config.schedule.num_steps = 3000
  config.evals.every_steps = 500
  config.ckpt.every_steps = 500
  config.log_every_steps = 100

  variants = set(filter(None, (arg or "").split(",")))
  if unknown := variants - set(VARIANTS):
    raise ValueError(
      f"Unknown variant(s) {sorted(unknown)} of configs/glyphs.py; use "
      f"any of {', '.join(VARIANTS)}, comma-separated."
    )
  if "triplet" in variants:
    config.loss.name = "triplet_semihard"
    config.input.samples_per_class = 8
  if "no_noto" in variants:
    config.input.glyphs.font_dirs = tuple(d for d in FONT_DIRS if d != NOTO_DIR)
  if "smoke" in variants:
    config_schema.shorten_for_smoke(config, max_eval_examples=2000)

  config.lock()
  return config
