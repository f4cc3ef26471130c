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
"""Users' image folders: layout, class split, bad files named, empty classes.

The folders are generated here with PIL (PNG and JPEG).
"""

import itertools
import pathlib
import tempfile

import numpy as np
from absl.testing import absltest

from configs import image_folder
from proxy_nca_jax.data import catalog, pipeline
from tests.testing import fake_images

# Class names, deliberately not created in sorted order.
CLASSES = ("dog", "cat", "emu", "bee")
SORTED = sorted(CLASSES)  # bee, cat, dog, emu: ids 0-3.


def write_folder(root: pathlib.Path, per_class: int = 3) -> dict[int, int]:
  """ROOT/{train,test}/CLASS/*.png: constant-colour images carrying ids.

  Returns:
    example id -> class id (position of the class name in sorted order).
  """
  labels = {}
  example_id = 0
  for name in CLASSES:
    for i in range(per_class):
      split = "train" if i % 2 == 0 else "test"
      folder = root / split / name
      folder.mkdir(parents=True, exist_ok=True)
      image = fake_images.id_image(example_id, shape=(7, 9))
      (folder / f"{example_id}.png").write_bytes(fake_images.encode(image))
      labels[example_id] = SORTED.index(name)
      example_id += 1
  return labels


class ImageFolderTest(absltest.TestCase):
  def setUp(self):
    super().setUp()
    self.root = pathlib.Path(tempfile.mkdtemp()) / "images"

  def config(self, **overrides):
    config = image_folder.get_config().input
    config.image_folder = str(self.root)
    config.image_size = 4
    config.eval_resize = 5
    config.batch_size = 4
    config.eval_batch_size = 8
    for key, value in overrides.items():
      config[key] = value
    return config

  def test_classes_split_by_sorted_names(self):
    labels = write_folder(self.root)
    # One JPEG too: both formats are read. A grey level survives JPEG's
    # colour conversion exactly: (40, 40, 40) reads back as id 40 + 256 * 40.
    grey = np.full((7, 9, 3), 40, np.uint8)
    jpeg = fake_images.encode(grey, "JPEG")
    (self.root / "train" / "dog" / "grey.jpg").write_bytes(jpeg)
    labels[40 + 256 * 40] = SORTED.index("dog")
    config = self.config()
    pipeline.prepare_dataset(config)
    # Four classes: the first half (bee, cat) trains, dog and emu test.
    self.assertEqual(pipeline.classes_of(config, "train"), (0, 1))
    self.assertEqual(pipeline.classes_of(config, "test"), (2, 3))
    self.assertEqual(pipeline.num_examples(config, "test"), 7)
    (batch,) = list(pipeline.create_eval_iterator(config, "test"))
    mask = batch["mask"]
    self.assertEqual(batch["image"].shape, (8, 4, 4, 3))
    ids = fake_images.ids_from_bn_inception(batch["image"][mask])
    self.assertCountEqual(ids, [i for i, c in labels.items() if c in (2, 3)])
    np.testing.assert_array_equal(
      batch["label"][mask], [labels[i] for i in ids]
    )
    iterator = pipeline.create_train_iterator(config, seed=0)
    batches = list(itertools.islice(iterator, 4))
    train_ids = fake_images.ids_from_bn_inception(
      np.concatenate([b["image"] for b in batches])
    )
    np.testing.assert_array_equal(
      np.concatenate([b["label"] for b in batches]),
      [labels[i] for i in train_ids],
    )
    self.assertContainsSubset(
      train_ids, [i for i, c in labels.items() if c < 2]
    )

  def test_eval_sources_name_each_images_split_folder(self):
    # ROOT/{train,query,gallery}/CLASS (In-Shop's layout): the eval batches
    # say which folder each image came from.
    folders = {}
    for example_id in range(24):
      split = ("train", "query", "gallery")[example_id % 3]
      folder = self.root / split / CLASSES[example_id % 4]
      folder.mkdir(parents=True, exist_ok=True)
      image = fake_images.id_image(example_id, shape=(7, 9))
      (folder / f"{example_id}.png").write_bytes(fake_images.encode(image))
      folders[example_id] = split
    config = self.config(eval_batch_size=16)
    pipeline.prepare_dataset(config)
    names = pipeline.split_names(config)
    self.assertEqual(names, ("gallery", "query", "train"))
    batches = list(
      pipeline.create_eval_iterator(config, "test", with_sources=True)
    )
    ids, sources = [], []
    for batch in batches:
      mask = batch["mask"]
      np.testing.assert_array_equal(batch["source"][~mask], -1)
      ids.extend(fake_images.ids_from_bn_inception(batch["image"][mask]))
      sources.extend(batch["source"][mask])
    # Test classes dog and emu: ids 0, 2, 4, ... (12 of them).
    self.assertLen(ids, 12)
    self.assertEqual([names[s] for s in sources], [folders[i] for i in ids])

  def test_num_train_classes_and_validation(self):
    write_folder(self.root)
    config = self.config(num_train_classes=3, num_val_classes=1)
    self.assertEqual(pipeline.classes_of(config, "train"), (0, 1))
    self.assertEqual(pipeline.classes_of(config, "val"), (2,))
    self.assertEqual(pipeline.classes_of(config, "test"), (3,))
    config = self.config(num_train_classes=4)
    with self.assertRaisesRegex(
      ValueError, r"has 4 classes \(ids 0-3\).*num_train_classes=2"
    ):
      pipeline.num_classes(config, "train")

  def test_unreadable_image_is_named(self):
    write_folder(self.root)
    bad = self.root / "test" / "cat" / "broken.jpg"
    bad.write_bytes(b"<html>not an image</html>")
    empty = self.root / "train" / "emu" / "empty.png"
    empty.write_bytes(b"")
    with self.assertRaises(catalog.DatasetError) as cm:
      pipeline.prepare_dataset(self.config())
    message = str(cm.exception)
    self.assertIn("2 file(s)", message)
    self.assertIn(f"{bad} (UnidentifiedImageError", message)
    self.assertIn(f"{empty} (empty file)", message)

  def test_truncated_jpeg_is_named_when_decoded(self):
    # PIL's verify() passes a truncated JPEG; TensorFlow's decoder does not,
    # and the iterator names the file instead of dropping it.
    write_folder(self.root)
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)
    jpeg = fake_images.encode(image, "JPEG")
    truncated = self.root / "train" / "dog" / "truncated.jpg"
    truncated.write_bytes(jpeg[: len(jpeg) // 2])
    config = self.config()
    pipeline.prepare_dataset(config)
    with self.assertRaisesRegex(
      catalog.DatasetError,
      f"1 image\\(s\\) of {self.root} cannot be decoded:\n  {truncated} "
      r"\(class 2\)",
    ):
      list(pipeline.create_eval_iterator(config, "test"))

  def test_empty_class_folder_is_named(self):
    write_folder(self.root)
    empty = self.root / "test" / "fox"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with self.assertRaisesRegex(
      catalog.DatasetError, f"Class folders without images.*\n  {empty}\n"
    ):
      pipeline.prepare_dataset(self.config())

  def test_layout_errors(self):
    with self.assertRaisesRegex(catalog.DatasetError, "input.image_folder"):
      pipeline.prepare_dataset(self.config(image_folder=None))
    with self.assertRaisesRegex(catalog.DatasetError, "is not a folder"):
      pipeline.num_classes(self.config(), "train")
    # Images beside class folders in a split folder: neither layout.
    (self.root / "all" / "cat").mkdir(parents=True)
    png = fake_images.encode(fake_images.id_image(0))
    (self.root / "all" / "cat" / "1.png").write_bytes(png)
    (self.root / "all" / "2.png").write_bytes(png)
    with self.assertRaisesRegex(
      catalog.DatasetError, "directly in a split folder.*one or the other"
    ):
      pipeline.prepare_dataset(self.config())

  def test_flat_layout_reads_as_one_split(self):
    labels = write_folder(self.root)
    flat = self.root.parent / "flat"
    for path in self.root.glob("*/*/*.png"):  # SPLIT/CLASS/ID.png
      (flat / path.parent.name).mkdir(parents=True, exist_ok=True)
      path.rename(flat / path.parent.name / path.name)
    config = self.config(image_folder=str(flat), num_train_classes=2)
    pipeline.prepare_dataset(config)
    self.assertEqual(pipeline.num_classes(config, "train"), 2)
    self.assertEqual(pipeline.num_classes(config, "test"), len(CLASSES) - 2)
    found = {}
    for split in ("train", "test"):
      for batch in pipeline.create_eval_iterator(config, split):
        mask = batch["mask"].astype(bool)
        ids = fake_images.ids_from_bn_inception(batch["image"][mask])
        found.update(zip(ids, batch["label"][mask], strict=True))
    # Every image once, with the class of its folder.
    self.assertEqual(found, labels)


if __name__ == "__main__":
  absltest.main()
