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
"""The paper's datasets through tfds (mocked): class splits, counts, errors.

`tfds.testing.mock_data` serves generated examples under the real dataset
names and features (tfds's own builder code: 'label' for CUB and Cars196,
'class_id' for SOP); nothing is downloaded or built.
"""

import itertools
import pathlib
import tempfile
from unittest import mock

import numpy as np
import tensorflow_datasets as tfds
from absl.testing import absltest, parameterized

from configs import cars196, cub200, sop
from proxy_nca_jax.data import catalog, pipeline, sources
from proxy_nca_jax.training import trainer
from tests.testing import fake_images

# dataset -> (config module, label feature, number of classes, train
# classes, train / test images of the paper's split), as published.
PAPER = {
  "caltech_birds2011": (cub200, "label", 200, 100, (5_864, 5_924)),
  "cars196": (cars196, "label", 196, 98, (8_054, 8_131)),
  "stanford_online_products": (
    sop,
    "class_id",
    22_634,
    11_318,
    (59_551, 60_502),
  ),
}
DATASETS = tuple((name,) for name in PAPER)


def take(iterator, n: int) -> list[dict[str, np.ndarray]]:
  return list(itertools.islice(iterator, n))


def paper_labels(name: str, drop_test: int = 0) -> np.ndarray:
  """Labels with the paper's image counts, spread evenly over the classes."""
  _, _, num_labels, num_train, (train_images, test_images) = PAPER[name]
  test_images -= drop_test
  per_train = np.diff(np.linspace(0, train_images, num_train + 1).round())
  per_test = np.diff(
    np.linspace(0, test_images, num_labels - num_train + 1).round()
  )
  return np.repeat(
    np.arange(num_labels), np.concatenate([per_train, per_test]).astype(int)
  )


def tfds_splits(
  name: str, labels: np.ndarray, images: list[bytes], seed: int = 0
) -> dict[str, dict[str, list]]:
  """Examples as tfds splits them: SOP by class, CUB and Cars by image."""
  label_key = catalog.SPECS[name].label_key
  if name == "stanford_online_products":
    in_train = labels < PAPER[name][3]
  else:
    in_train = np.random.default_rng(seed).random(len(labels)) < 0.5
  splits = {}
  for split, rows in (("train", in_train), ("test", ~in_train)):
    columns = {
      "image": [images[i] for i in np.flatnonzero(rows)],
      label_key: labels[rows].tolist(),
    }
    if key := catalog.SPECS[name].filename_key:
      columns[key] = [f"img{i}.jpg" for i in np.flatnonzero(rows)]
    splits[split] = columns
  return splits


class PaperDatasetsTest(parameterized.TestCase):
  def setUp(self):
    super().setUp()
    self.tmp = pathlib.Path(tempfile.mkdtemp())

  def config(self, name: str, arg: str | None = None, **overrides):
    config = PAPER[name][0].get_config(arg)
    config.input.data_dir = str(self.tmp / "data")
    for key, value in overrides.items():
      config.input[key] = value
    return config

  @parameterized.parameters(*DATASETS)
  def test_real_builder_features_and_paper_class_counts(self, name):
    _, label_key, num_labels, num_train, _ = PAPER[name]
    features = tfds.builder(name, data_dir=self.tmp).info.features
    self.assertEqual(catalog.SPECS[name].label_key, label_key)
    self.assertEqual(features[label_key].num_classes, num_labels)
    if key := catalog.SPECS[name].filename_key:
      self.assertIn(key, features)
    config = self.config(name).input
    self.assertEqual(pipeline.num_classes(config, "train"), num_train)
    self.assertEqual(
      pipeline.num_classes(config, "test"), num_labels - num_train
    )
    self.assertEqual(
      pipeline.classes_of(config, "test"),
      tuple(range(num_train, num_labels)),
    )
    val = self.config(name, "val").input
    self.assertEqual(
      pipeline.classes_of(val, "val"),
      tuple(range(num_train - num_train // 2, num_train)),
    )
    self.assertEqual(
      pipeline.classes_of(val, "train"),
      tuple(range(num_train - num_train // 2)),
    )

  @parameterized.parameters(*DATASETS)
  def test_paper_counts_checked_on_full_size_mock(self, name):
    train_images, test_images = PAPER[name][4]
    png = fake_images.encode(fake_images.id_image(0))
    labels = paper_labels(name)
    with fake_images.mocked_dataset(
      name, self.tmp / "data", tfds_splits(name, labels, [png] * len(labels))
    ):
      config = self.config(name).input
      pipeline.prepare_dataset(config)  # Counts as published: passes.
      self.assertEqual(pipeline.num_examples(config, "test"), test_images)
      self.assertEqual(pipeline.num_examples(config, "train"), train_images)

    labels = paper_labels(name, drop_test=1)
    other = self.tmp / "other"
    with fake_images.mocked_dataset(
      name, other, tfds_splits(name, labels, [png] * len(labels))
    ):
      config = self.config(name, data_dir=str(other)).input
      with self.assertRaisesRegex(
        catalog.DatasetError,
        f"{train_images:,} images of the train classes and "
        f"{test_images - 1:,} of the test classes.*{test_images:,}.*"
        "check_num_examples=False",
      ):
        pipeline.prepare_dataset(config)
      config.check_num_examples = False
      pipeline.prepare_dataset(config)

  @parameterized.parameters(*DATASETS)
  def test_class_split_of_train_and_eval_iterators(self, name):
    num_labels, num_train = PAPER[name][2], PAPER[name][3]
    # Three images each of a few classes either side of the boundary.
    classes = (0, 1, num_train - 2, num_train - 1, num_train, num_labels - 1)
    labels = np.repeat(np.array(classes), 3)
    images = [fake_images.encode(fake_images.id_image(i)) for i in range(18)]
    with fake_images.mocked_dataset(
      name, self.tmp / "data", tfds_splits(name, labels, images, seed=1)
    ):
      config = self.config(
        name,
        image_size=4,
        eval_resize=5,
        batch_size=8,
        eval_batch_size=8,
        num_val_classes=2,
        check_num_examples=False,  # 18 images, not the paper's counts.
      ).input
      pipeline.prepare_dataset(config)
      self.assertEqual(pipeline.num_classes(config, "train"), num_train - 2)
      batches = take(pipeline.create_train_iterator(config, seed=0), 6)
      for batch in batches:
        self.assertEqual(batch["image"].shape, (8, 4, 4, 3))
        self.assertEqual(batch["image"].dtype, np.float32)
      ids = fake_images.ids_from_bn_inception(
        np.concatenate([b["image"] for b in batches])
      )
      # Classes 0 and 1 only (the last two train classes validate).
      np.testing.assert_array_equal(
        np.concatenate([b["label"] for b in batches]), labels[ids]
      )
      self.assertCountEqual(set(ids), range(6))
      for split, want in (
        ("val", (num_train - 2, num_train - 1)),
        ("test", (num_train, num_labels - 1)),
      ):
        self.assertEqual(pipeline.num_examples(config, split), 6)
        (batch,) = list(pipeline.create_eval_iterator(config, split))
        mask = batch["mask"]
        ids = fake_images.ids_from_bn_inception(batch["image"][mask])
        self.assertCountEqual(ids, np.flatnonzero(np.isin(labels, want)))
        np.testing.assert_array_equal(batch["label"][mask], labels[ids])
        np.testing.assert_array_equal(batch["image"][~mask], 0)

  def test_augmented_batches_depend_on_seed_and_resume(self):
    name = "caltech_birds2011"
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array([0, 1, 150]), 4)
    images = [
      fake_images.encode(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
      for _ in labels
    ]
    with fake_images.mocked_dataset(
      name, self.tmp / "data", tfds_splits(name, labels, images)
    ):
      config = self.config(name, image_size=6, batch_size=4, shuffle_buffer=64)
      config = config.input
      first = take(pipeline.create_train_iterator(config, seed=3), 6)
      again = take(pipeline.create_train_iterator(config, seed=3), 6)
      other = take(pipeline.create_train_iterator(config, seed=4), 6)
      resumed = take(
        pipeline.create_train_iterator(config, seed=3, start_step=4), 2
      )
    for want, got in zip(first, again, strict=True):
      np.testing.assert_array_equal(got["image"], want["image"])
    for want, got in zip(first[4:], resumed, strict=True):
      np.testing.assert_array_equal(got["image"], want["image"])
      np.testing.assert_array_equal(got["label"], want["label"])
    self.assertFalse(np.array_equal(first[0]["image"], other[0]["image"]))

  @parameterized.parameters(*DATASETS)
  def test_unprepared_dataset_names_what_to_download(self, name):
    manual = self.tmp / "manual"
    manual.mkdir()
    data_dir = self.tmp / "data"
    config = self.config(name, manual_dir=str(manual)).input
    with self.assertRaises(catalog.DatasetError) as cm:
      pipeline.prepare_dataset(config)
    message = str(cm.exception)
    version = tfds.builder(name, data_dir=data_dir).version
    self.assertIn(f"Dataset {name} ", message)
    self.assertIn(str(data_dir / name / str(version)), message)
    self.assertIn(f"input.manual_dir={manual}", message)
    for source in catalog.SPECS[name].files:
      self.assertIn(f"{source.filename} ({source.size}) MISSING", message)
      self.assertIn(source.url, message)
    self.assertIn("--config.input.download=True", message)
    self.assertFalse(data_dir.exists())  # Nothing written.

  def test_missing_module_is_named_before_preparing(self):
    manual = self.tmp / "manual"
    manual.mkdir()
    for source in catalog.SPECS["caltech_birds2011"].files:
      (manual / source.filename).write_bytes(b"")
    config = self.config("caltech_birds2011", manual_dir=str(manual)).input
    with (
      mock.patch.object(sources.importlib.util, "find_spec", return_value=None),
      self.assertRaisesRegex(
        catalog.DatasetError,
        "needs the Python module cv2.*pip install opencv-python-headless",
      ),
    ):
      pipeline.prepare_dataset(config)
    self.assertFalse((self.tmp / "data").exists())

  def test_trainer_stops_before_writing_the_workdir(self):
    config = self.config("cars196", manual_dir=str(self.tmp))
    # A model that exists today; the error comes from the data first.
    config.model.name = "convnet_s"
    config.model.widths = (4, 8, 8)
    workdir = self.tmp / "workdir"
    with self.assertRaisesRegex(catalog.DatasetError, "cars_train.tgz"):
      trainer.train_and_evaluate(config, str(workdir))
    self.assertFalse(workdir.exists())


if __name__ == "__main__":
  absltest.main()
