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
"""Where the examples come from: tfds builders, preparing them, reading them.

`input.dataset` is one of `catalog.SUPPORTED`: `fashion_mnist_idx` (our
builder over the IDX files), the tfds datasets of the paper's benchmarks
(`caltech_birds2011`, `cars196`, `stanford_online_products`) or
`image_folder` (`input.image_folder`, see data/builders/image_folder.py).

`prepare_dataset` makes sure the data is there before a run writes anything:
it builds a tfds dataset from the files in `input.manual_dir` (or, with
`input.download`, lets tfds fetch them), validates an image folder, and
checks the image counts of the paper's class split. `read` then gives every
image of the dataset, all tfds splits pooled, in a fixed order, still
encoded: the pipeline splits by class itself.
"""

import contextlib
import importlib.util
import sys

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from proxy_nca_jax.data import catalog, class_splits
from proxy_nca_jax.data.builders import fashion_mnist_idx, glyphs, image_folder

DatasetError = catalog.DatasetError
# The builder splits pooled before splitting by class.
SOURCE_SPLIT = "train+test"


def builder(
  input_config: ml_collections.ConfigDict,
) -> tfds.core.DatasetBuilder:
  """Returns the (maybe unprepared) builder named by `input_config`."""
  catalog.traits(input_config.dataset)  # Raises for an unsupported one.
  dataset = input_config.dataset
  if dataset == catalog.IMAGE_FOLDER:
    root = input_config.image_folder
    if not root or not epath.Path(root).is_dir():
      image_folder.check_folder(root)  # Raises the message.
    return image_folder.builder(root)
  kwargs = {}
  if dataset == catalog.FASHION_MNIST:
    kwargs = {"download": input_config.download}
  elif dataset == catalog.GLYPHS:
    kwargs = {"config": glyphs.builder_config(input_config.glyphs)}
  return tfds.builder(dataset, data_dir=input_config.data_dir, **kwargs)


def num_labels(input_config: ml_collections.ConfigDict) -> int:
  """The number of class ids of the dataset (prepared or not)."""
  features = builder(input_config).info.features
  return features[catalog.traits(input_config.dataset).label_key].num_classes


def _is_prepared(dataset_builder: tfds.core.DatasetBuilder) -> bool:
  if isinstance(dataset_builder, tfds.folder_dataset.ImageFolder):
    return True
  # `is_prepared` alone logs a warning when the folder does not exist yet.
  return dataset_builder.data_path.exists() and dataset_builder.is_prepared()


def prepared_builder(
  input_config: ml_collections.ConfigDict,
) -> tfds.core.DatasetBuilder:
  """The builder, which must be prepared (see `prepare_dataset`)."""
  dataset_builder = builder(input_config)
  if not _is_prepared(dataset_builder):
    raise DatasetError(
      f"Dataset {dataset_builder.name} is not prepared in "
      f"{dataset_builder.data_dir_root}; call "
      "input_pipeline.prepare_dataset(config.input) first."
    )
  return dataset_builder


def _fashion_mnist_message(
  input_config: ml_collections.ConfigDict, missing: tuple[str, ...]
) -> str:
  folder = input_config.manual_dir or "(input.manual_dir is empty)"
  return (
    f"Fashion-MNIST IDX files not found: looked in {folder} for "
    f"{', '.join(fashion_mnist_idx.ALL_FILENAMES)}; missing: "
    f"{', '.join(missing)}. Do one of:\n"
    "  * apt-get install dataset-fashion-mnist (installs them in "
    "/usr/share/datasets/fashion-mnist);\n"
    "  * copy the four files into a folder DIR and pass "
    "--config.input.manual_dir=DIR;\n"
    "  * pass --config.input.download=True to fetch them from "
    f"{fashion_mnist_idx.URL}."
  )


def _missing_source_files(
  input_config: ml_collections.ConfigDict,
) -> tuple[catalog.SourceFile, ...]:
  if input_config.dataset == catalog.FASHION_MNIST:
    names = fashion_mnist_idx.missing_files(input_config.manual_dir or None)
    return tuple(
      catalog.SourceFile(n, fashion_mnist_idx.URL, "") for n in names
    )
  if input_config.dataset == catalog.GLYPHS:
    return ()  # Rendered from font files; the builder names missing ones.
  files = catalog.SPECS[input_config.dataset].files
  if not input_config.manual_dir:
    return files
  folder = epath.Path(input_config.manual_dir)
  return tuple(f for f in files if not (folder / f.filename).exists())


def _missing_files_message(
  input_config: ml_collections.ConfigDict,
  dataset_builder: tfds.core.DatasetBuilder,
  missing: tuple[catalog.SourceFile, ...],
) -> str:
  if input_config.dataset == catalog.FASHION_MNIST:
    return _fashion_mnist_message(
      input_config, tuple(f.filename for f in missing)
    )
  spec = catalog.SPECS[input_config.dataset]
  manual = input_config.manual_dir or "(input.manual_dir is empty)"
  files = "\n".join(
    f"  {f.filename} ({f.size}){' MISSING' if f in missing else ''}\n"
    f"      from {f.url}"
    for f in spec.files
  )
  return (
    f"Dataset {spec.name} ({spec.title}) is not prepared: tfds looks for it "
    f"in {dataset_builder.data_dir} (input.data_dir; default "
    "$TFDS_DATA_DIR or ~/tensorflow_datasets), and builds it from these "
    f"files in input.manual_dir={manual}:\n{files}\n"
    "Put the original files (tfds checks their SHA-256) in a folder DIR and "
    "pass --config.input.manual_dir=DIR, or pass "
    "--config.input.download=True to let tfds fetch them."
    + (f"\n{spec.note}" if spec.note else "")
  )


def _check_modules(dataset: str) -> None:
  spec = catalog.SPECS.get(dataset)
  for module, package in spec.modules if spec else ():
    if importlib.util.find_spec(module) is None:
      raise DatasetError(
        f"tfds's {dataset} builder needs the Python module {module} to "
        f"prepare the dataset: pip install {package}"
      )


def _build(
  input_config: ml_collections.ConfigDict,
  dataset_builder: tfds.core.DatasetBuilder,
) -> None:
  """Runs tfds's preparation; removes what it created if it fails."""
  if dataset_builder.data_path.exists():
    raise DatasetError(
      f"{dataset_builder.data_path} exists but holds no complete dataset (no "
      "dataset_info.json), maybe from an interrupted run; delete it and retry."
    )
  missing = _missing_source_files(input_config)
  if missing and not input_config.download:
    raise DatasetError(
      _missing_files_message(input_config, dataset_builder, missing)
    )
  _check_modules(input_config.dataset)
  manual_dir = input_config.manual_dir or None
  root = epath.Path(dataset_builder.data_dir_root)
  maybe_created = (root, root / dataset_builder.name, root / "downloads")
  created = [path for path in maybe_created if not path.exists()]
  logging.info(
    "Preparing %s in %s from %s%s",
    dataset_builder.name,
    dataset_builder.data_dir,
    manual_dir,
    " (downloading missing files)" if missing else "",
  )
  try:
    # tfds announces the build on stdout, which the commands keep for their
    # results (JSON, tables); its progress bars would garble the log (our
    # own lines above and below say what is being built and where).
    tfds.disable_progress_bar()
    with contextlib.redirect_stdout(sys.stderr):
      dataset_builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
      )
  except BaseException as e:
    for path in created:
      if path.exists():
        logging.info("Removing %s after the failure to prepare", path)
        path.rmtree()
    if isinstance(e, fashion_mnist_idx.MissingFilesError):
      raise DatasetError(
        _missing_files_message(input_config, dataset_builder, missing)
      ) from e
    raise


def prepare_dataset(input_config: ml_collections.ConfigDict) -> None:
  """Makes sure the dataset can be read; builds it if needed.

  Idempotent: a prepared tfds dataset is reused (its source files are then
  not needed). On failure, the folders this call created (`data_dir`
  itself, the dataset's folder, tfds's `downloads`) are removed, so a retry
  starts clean. An image folder is validated (layout, every file). For the
  paper's datasets under the paper's class split, the image counts of the
  train and test classes are checked (`input.check_num_examples`).

  Args:
    input_config: the `config.input` section; reads `dataset`, `data_dir`,
      `manual_dir`, `download` (and `image_folder`, `check_num_examples`
      where the config has them).

  Raises:
    DatasetError: the source files are not in `manual_dir` and `download`
      is False (the message says where tfds looks, which files are needed
      and where they come from); an invalid image folder; image counts that
      differ from the paper's.
    ValueError: an unsupported dataset, or corrupt source files (the message
      names the file).
  """
  catalog.traits(input_config.dataset)  # Raises for an unsupported one.
  if input_config.dataset == catalog.IMAGE_FOLDER:
    contents = image_folder.check_folder(input_config.image_folder)
    logging.info(
      "Image folder %s: %d classes, %d images",
      input_config.image_folder,
      len(contents.class_names),
      sum(contents.num_images),
    )
    return
  dataset_builder = builder(input_config)
  if _is_prepared(dataset_builder):
    logging.info(
      "Reusing %s in %s", dataset_builder.name, dataset_builder.data_dir
    )
  else:
    _build(input_config, dataset_builder)
  _check_num_examples(input_config, dataset_builder)


def _check_num_examples(
  input_config: ml_collections.ConfigDict,
  dataset_builder: tfds.core.DatasetBuilder,
) -> None:
  """Compares the images of the paper's class split with the paper's."""
  spec = catalog.SPECS.get(input_config.dataset)
  if spec is None or not input_config.check_num_examples:
    return
  total = num_labels(input_config)
  classes = class_splits.split_classes(input_config, total)
  train = set(classes["train"]) | set(classes["val"])
  paper_train = set(range(spec.paper_num_train_classes))
  if train != paper_train or set(classes["test"]) != set(
    range(spec.paper_num_train_classes, total)
  ):
    logging.info("Not the paper's class split: image counts not checked.")
    return
  labels = source_labels(input_config)
  found = (
    int(np.isin(labels, sorted(paper_train)).sum()),
    int((labels >= spec.paper_num_train_classes).sum()),
  )
  if found != spec.paper_num_examples:
    raise DatasetError(
      f"{spec.name} in {dataset_builder.data_dir} holds {found[0]:,} images "
      f"of the train classes and {found[1]:,} of the test classes; the "
      f"paper's split has {spec.paper_num_examples[0]:,} and "
      f"{spec.paper_num_examples[1]:,}. The prepared dataset is incomplete "
      "or another version: delete that folder and prepare it again from the "
      "original files, or pass --config.input.check_num_examples=False to "
      "use it anyway."
    )
  logging.info("%s: %d / %d images, as in the paper.", spec.name, *found)


def split_names(dataset_builder: tfds.core.DatasetBuilder) -> tuple[str, ...]:
  """The dataset's tfds splits, in the order `read` pools them."""
  if isinstance(dataset_builder, tfds.folder_dataset.ImageFolder):
    return tuple(sorted(dataset_builder.info.splits))
  return tuple(SOURCE_SPLIT.split("+"))


def _read_options() -> tfds.ReadConfig:
  options = tf.data.Options()
  options.deterministic = True
  return tfds.ReadConfig(
    try_autocache=False, skip_prefetch=True, options=options
  )


def read(
  input_config: ml_collections.ConfigDict,
  dataset_builder: tfds.core.DatasetBuilder,
  *,
  with_names: bool = False,
  with_sources: bool = False,
  batch_size: int | None = None,
) -> tf.data.Dataset:
  """Every example of the dataset in a fixed order, image still encoded.

  Args:
    input_config: the `config.input` section.
    dataset_builder: from `prepared_builder(input_config)`.
    with_names: add 'name', the image's file name where the dataset records
      it (else empty).
    with_sources: add 'source', int32: the tfds split the example comes from,
      an index into `split_names`.
    batch_size: yield batches of this many examples (the last one smaller);
      much faster for passes over every example.

  Returns:
    A dataset of {'image': string (encoded JPEG/PNG), 'label': int64, with
    `with_names` 'name': string, with `with_sources` 'source'}, or of batches
    of them.
  """
  label_key = catalog.traits(input_config.dataset).label_key
  spec = catalog.SPECS.get(input_config.dataset)
  name_key = spec.filename_key if spec else None
  skip = {"image": tfds.decode.SkipDecoding()}
  names = split_names(dataset_builder)
  if isinstance(dataset_builder, tfds.folder_dataset.ImageFolder):
    name_key = "image/filename"
    # The splits follow one another.
    parts = [
      dataset_builder.as_dataset(split=split, decoders=skip) for split in names
    ]
    if with_sources:
      parts = [
        part.map(lambda x, i=i: {**x, "source": tf.constant(i, tf.int32)})
        for i, part in enumerate(parts)
      ]
    ds = parts[0]
    for part in parts[1:]:
      ds = ds.concatenate(part)
  else:
    keys = {"image": True, label_key: True}
    if with_names and name_key:
      keys[name_key] = True
    read_config = _read_options()
    # tfds interleaves the files of the pooled splits: an example's split is
    # in its id, "<dataset>-<split>.tfrecord-<shard>-of-<n>__<index>".
    read_config.add_tfds_id = with_sources
    ds = dataset_builder.as_dataset(
      split=SOURCE_SPLIT,
      shuffle_files=False,
      decoders=tfds.decode.PartialDecoding(keys, decoders=skip),
      read_config=read_config,
    )

  def source(example: dict[str, tf.Tensor]) -> tf.Tensor:
    if "source" in example:
      return example["source"]
    in_split = [
      tf.strings.regex_full_match(
        example["tfds_id"], f".*-{name}\\.tfrecord-.*"
      )
      for name in names
    ]
    return tf.cast(tf.argmax(in_split, axis=0), tf.int32)

  def select(example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    out = {"image": example["image"], "label": example[label_key]}
    if with_names:
      out["name"] = example[name_key] if name_key else tf.constant("")
    if with_sources:
      out["source"] = source(example)
    return out

  if batch_size:
    ds = ds.batch(batch_size)
  return ds.map(select)


_LABELS: dict[str, np.ndarray] = {}


def source_labels(input_config: ml_collections.ConfigDict) -> np.ndarray:
  """The labels of every example in `read` order, int64 (n,).

  A prepared dataset never changes, so they are read once per process and
  location (tfds folder, or image folder).
  """
  dataset_builder = prepared_builder(input_config)
  key = str(dataset_builder.data_path)
  if key not in _LABELS:
    ds = read(input_config, dataset_builder, batch_size=8192)
    batches = list(ds.map(lambda x: x["label"]).as_numpy_iterator())
    _LABELS[key] = np.concatenate(batches) if batches else np.zeros(0, np.int64)
  return _LABELS[key]
