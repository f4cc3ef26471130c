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
"""Class-disjoint (zero-shot) splits: which classes train, validate, test.

A config names the classes of each split in one of two ways:

* explicitly: `input.train_classes`, `input.test_classes` and
  `input.val_classes` are tuples of class ids (FMNIST-ZS: 0-4 / 5-9);
* by count, when `train_classes` and `test_classes` are both empty: the
  first `input.num_train_classes` class ids (None: half, rounded down)
  train and all the others test
  (the paper's protocol: CUB 100 / 100, Cars196 98 / 98, SOP 11,318 /
  11,316), and the last `input.num_val_classes` train classes are held out
  for validation (ProxyNCA++ holds out half of them).

Class ids are the dataset's labels; for a folder of images, the positions
of the class folder names in sorted order.
"""

import numbers

import ml_collections

from proxy_nca_jax import errors

SPLITS = ("train", "val", "test")


def _as_class_ids(
  input_config: ml_collections.ConfigDict, field: str, num_labels: int
) -> tuple[int, ...]:
  classes = tuple(input_config[field])
  bad = [
    c
    for c in classes
    if isinstance(c, bool)
    or not isinstance(c, numbers.Integral)
    or not 0 <= c < num_labels
  ]
  if bad:
    raise errors.InvalidInputError(
      f"input.{field} holds {bad}, not class ids of {input_config.dataset} "
      f"(integers in [0, {num_labels}))."
    )
  if len(set(classes)) != len(classes):
    raise errors.InvalidInputError(f"input.{field}={classes} repeats a class.")
  return tuple(int(c) for c in classes)


def _count(
  input_config: ml_collections.ConfigDict, field: str, default: int | None
) -> int | None:
  value = input_config.get(field, default)
  if value is not None and (
    isinstance(value, bool) or not isinstance(value, numbers.Integral)
  ):
    raise errors.InvalidInputError(
      f"input.{field}={value!r} must be an integer."
    )
  return value


def _by_count(
  input_config: ml_collections.ConfigDict, num_labels: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
  """(train, test, val) from num_train_classes and num_val_classes."""
  if "num_train_classes" not in input_config:
    raise errors.InvalidInputError(
      "input.train_classes and input.test_classes must not be empty "
      f"(got {tuple(input_config.train_classes)} and "
      f"{tuple(input_config.test_classes)})."
    )
  num_train = _count(input_config, "num_train_classes", None)
  if num_train is None:
    num_train = num_labels // 2
  if not 0 < num_train < num_labels:
    raise errors.InvalidInputError(
      f"input.num_train_classes={num_train}, but {input_config.dataset} has "
      f"{num_labels} classes (ids 0-{num_labels - 1}): use a number in "
      f"[1, {num_labels - 1}], e.g. --config.input.num_train_classes="
      f"{max(1, num_labels // 2)} (the first half trains, the rest tests)."
    )
  num_val = _count(input_config, "num_val_classes", 0) or 0
  if num_val and input_config.val_classes:
    raise errors.InvalidInputError(
      "Set input.val_classes or input.num_val_classes, not both."
    )
  if not 0 <= num_val < num_train:
    raise errors.InvalidInputError(
      f"input.num_val_classes={num_val} must be in [0, {num_train}) "
      f"(input.num_train_classes={num_train}); leave some classes to train "
      "on."
    )
  train = tuple(range(num_train))
  val = train[num_train - num_val :] if num_val else ()
  if input_config.val_classes:
    val = _as_class_ids(input_config, "val_classes", num_labels)
  return train, tuple(range(num_train, num_labels)), val


def split_classes(
  input_config: ml_collections.ConfigDict, num_labels: int
) -> dict[str, tuple[int, ...]]:
  """Validates the class configuration and returns each split's classes.

  Args:
    input_config: the `config.input` section.
    num_labels: number of class ids of the dataset (ids 0..num_labels-1).

  Returns:
    {'train': train classes minus validation classes, in config order (the
    order of the proxies), 'val': validation classes, 'test': test classes}.

  Raises:
    ValueError: a class out of range or repeated, overlapping train and test
      classes, validation classes outside the train classes or holding all
      of them, or no classes to train or test on.
  """
  if not input_config.train_classes and not input_config.test_classes:
    train, test, val = _by_count(input_config, num_labels)
  else:
    train, test, val = (
      _as_class_ids(input_config, field, num_labels)
      for field in ("train_classes", "test_classes", "val_classes")
    )
  if not train or not test:
    raise errors.InvalidInputError(
      "input.train_classes and input.test_classes must not be empty "
      f"(got {train} and {test})."
    )
  if overlap := sorted(set(train) & set(test)):
    raise errors.InvalidInputError(
      f"input.train_classes and input.test_classes share classes {overlap}; "
      "the protocol is zero-shot, so they must be disjoint."
    )
  if outside := sorted(set(val) - set(train)):
    raise errors.InvalidInputError(
      f"input.val_classes holds {outside}, not in input.train_classes="
      f"{train}; validation classes are held-out train classes."
    )
  train_only = tuple(c for c in train if c not in set(val))
  if not train_only:
    raise errors.InvalidInputError(
      f"input.val_classes={val} holds all of input.train_classes; leave some "
      "classes to train on."
    )
  return {"train": train_only, "val": val, "test": test}


def describe(classes: tuple[int, ...]) -> str:
  """A short text for logs: '0-99 (100 classes)', or the ids if few."""
  classes = tuple(classes)
  if len(classes) <= 10:
    return str(classes)
  if classes == tuple(range(classes[0], classes[0] + len(classes))):
    return f"{classes[0]}-{classes[-1]} ({len(classes)} classes)"
  return f"{classes[:5]}... ({len(classes)} classes)"
