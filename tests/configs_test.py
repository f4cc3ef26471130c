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
"""Every config file holds every field of the schema.

Configs are locked, so a field the code reads but a config lacks is an
error only when that config runs. proxy_nca_jax/config_schema.py
is the reference: each config must hold each of its fields (they may add
their own).
"""

import importlib

import ml_collections
from absl.testing import absltest, parameterized

from configs import cub200, fashion_mnist, glyphs
from proxy_nca_jax import config_defaults, config_schema

CONFIGS = (
  ("fashion_mnist", None),
  ("fashion_mnist", "triplet"),
  ("glyphs", None),
  ("glyphs", "triplet"),
  ("glyphs", "triplet,no_noto"),
  ("cub200", None),
  ("cub200", "recipe=proxynca_pp"),
  ("cars196", None),
  ("sop", None),
  ("image_folder", None),
)


def _fields(config: ml_collections.ConfigDict, prefix: str = "") -> set[str]:
  fields = set()
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      fields |= _fields(value, f"{prefix}{key}.")
    else:
      fields.add(prefix + key)
  return fields


class ConfigFieldsTest(parameterized.TestCase):
  @parameterized.parameters(*CONFIGS)
  def test_holds_every_schema_field(self, name, arg):
    config = importlib.import_module(f"configs.{name}").get_config(arg)
    missing = _fields(config_schema.base_config()) - _fields(config)
    self.assertEmpty(sorted(missing), f"configs/{name}.py lacks these fields")

  def test_only_colour_image_configs_split_classes_by_count(self):
    # class_splits.py splits by counts where input.num_train_classes exists.
    rgb_only = _fields(config_schema.base_config(rgb_input=True)) - _fields(
      config_schema.base_config()
    )
    self.assertIn("input.num_train_classes", rgb_only)
    self.assertEmpty(rgb_only & _fields(fashion_mnist.get_config()))
    self.assertEmpty(rgb_only & _fields(glyphs.get_config()))
    self.assertContainsSubset(rgb_only, _fields(cub200.get_config()))


class PaperConfigsTest(parameterized.TestCase):
  @parameterized.parameters(
    # The Recall@K columns of each dataset's table in the paper.
    ("cub200", (1, 2, 4, 8)),
    ("cars196", (1, 2, 4, 8)),
    ("sop", (1, 10, 100, 1000)),
  )
  def test_report_the_papers_recall_columns_at_its_embedding_size(
    self, name, recall_ks
  ):
    config = importlib.import_module(f"configs.{name}").get_config()
    self.assertEqual(tuple(config.evals.recall_ks), recall_ks)
    self.assertEqual(config.model.name, "bn_inception")
    self.assertEqual(config.model.embedding_dim, 64)


class OverridableTest(parameterized.TestCase):
  @parameterized.parameters(*CONFIGS)
  def test_fields_that_default_to_none_take_a_command_line_value(
    self, name, arg
  ):
    # A plain None field cannot be overridden by --config.FIELD=...
    # (ml_collections has no type to parse it to); a typed placeholder can.
    config = importlib.import_module(f"configs.{name}").get_config(arg)
    untyped = [
      field
      for field in _fields(config)
      if _get(config, field) is None
      and _section(config, field).get_ref(field.rpartition(".")[2]).get_type()
      is type(None)
    ]
    self.assertEmpty(untyped, "use config_dict.placeholder(type)")


def _section(config: ml_collections.ConfigDict, field: str):
  for key in field.split(".")[:-1]:
    config = config[key]
  return config


def _get(config: ml_collections.ConfigDict, field: str):
  return _section(config, field)[field.rpartition(".")[2]]


class ConfigDefaultsTest(absltest.TestCase):
  def test_every_optional_field_is_a_schema_field(self):
    # Their values come from the schema; the shipped configs, built on it,
    # never need them.
    fields = _fields(config_schema.base_config())
    for key in config_defaults.OPTIONAL_FIELDS:
      self.assertIn(key, fields)

  def test_an_older_config_gets_the_behaviour_from_before_the_field(self):
    saved = fashion_mnist.get_config().to_dict()
    del saved["proxies"]["sharding"]
    del saved["input"]["augmentation"]
    del saved["input"]["check_num_examples"]
    saved["input"]["dataset"] = "mine"  # Untouched.
    config = config_defaults.with_defaults(ml_collections.ConfigDict(saved))
    self.assertEqual(config.proxies.sharding, "replicated")
    self.assertEqual(config.input.augmentation, "none")
    self.assertFalse(config.input.check_num_examples)
    self.assertEqual(config.input.dataset, "mine")

  def test_the_default_is_the_schemas_not_the_configs_family(self):
    # A benchmark config saved before the image-count check ran without it.
    saved = cub200.get_config().to_dict()
    del saved["input"]["check_num_examples"]
    config = config_defaults.with_defaults(ml_collections.ConfigDict(saved))
    self.assertFalse(config.input.check_num_examples)
    self.assertTrue(cub200.get_config().input.check_num_examples)

  def test_fields_a_config_sets_are_kept(self):
    config = glyphs.get_config()
    with config.unlocked():
      config.proxies.sharding = "sharded"
    config = config_defaults.with_defaults(config)
    self.assertEqual(config.proxies.sharding, "sharded")
    self.assertEqual(config.input.augmentation, "glyphs")


class GlyphsVariantsTest(absltest.TestCase):
  def test_no_noto_drops_only_the_noto_folder(self):
    base = glyphs.get_config().input.glyphs.font_dirs
    without = glyphs.get_config("no_noto,triplet")
    self.assertEqual(
      set(base) - set(without.input.glyphs.font_dirs),
      {"/usr/share/fonts/opentype/noto"},
    )
    self.assertLen(without.input.glyphs.font_dirs, len(base) - 1)
    self.assertEqual(without.loss.name, "triplet_semihard")

  def test_unknown_variant_is_named(self):
    with self.assertRaisesRegex(ValueError, r"\['tripplet'\].*no_noto"):
      glyphs.get_config("tripplet")


if __name__ == "__main__":
  absltest.main()
