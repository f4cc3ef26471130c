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
"""Which images query which: the protocol of ``evals.query_gallery``.

By default (None) every image of the evaluated split queries all the others
(leave-one-out, the protocol of the paper and of CUB, Cars196 and SOP).
Three other protocols give separate query and gallery sets, as In-Shop
Clothes Retrieval and its users do:

* ``'per_class:K'``: the first K images of each class, in the split's fixed
  order, query the others. For data without a query/gallery division.
* ``'splits:Q/G'``: the images read from the dataset's tfds split Q query
  those from split G. An image folder ``ROOT/query/CLASS/...`` plus
  ``ROOT/gallery/CLASS/...`` is ``'splits:query/gallery'``; FMNIST-ZS's
  ``'splits:test/train'`` has the t10k images of the test classes query the
  train images of the same classes. Images of other splits take no part in
  retrieval.
* ``'classes:Q/G'``: the images of classes Q query the images of classes G,
  Q within G, each query left out of its own neighbours; G's other classes
  are distractors. Q and G list class ids and ranges of the evaluated split,
  e.g. ``'classes:5-6/5-9'`` or ``'classes:5,7/5-9'``.

Recall@K, R-Precision and MAP@R are then the queries' against the gallery
(R = gallery items of the query's class, the query itself excluded; a query
with R = 0 counts as a miss in Recall@K and is left out of MAP@R). NMI and
AMI still cluster the whole split
(``inference.split_evaluation.evaluate_with_config`` applies the protocol).
"""

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from proxy_nca_jax import errors

KINDS = ("per_class", "splits", "classes")
_HELP = (
  "use None (each image queries the others), 'per_class:K' (the first K "
  "images of each class query the rest), 'splits:Q/G' (images of tfds split "
  "Q query those of split G, e.g. 'splits:query/gallery' for an image "
  "folder with query/ and gallery/) or 'classes:Q/G' (classes Q query "
  "classes G, Q within G, e.g. 'classes:5-6/5-9')."
)
# Classes named in an error message before "and N more".
_MAX_LISTED = 10
_CLASS_LIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


@dataclasses.dataclass(frozen=True)
class Protocol:
  """A parsed ``evals.query_gallery``.

  Attributes:
    kind: one of `KINDS`.
    per_class: K of 'per_class:K' (0 otherwise).
    query: the query splits' names or class ids.
    gallery: the gallery splits' names or class ids.
  """

  kind: str
  per_class: int = 0
  query: tuple[str | int, ...] = ()
  gallery: tuple[str | int, ...] = ()

  @property
  def needs_source_splits(self) -> bool:
    """Whether `select` needs each image's tfds split."""
    return self.kind == "splits"


def _listed(values: Sequence[int]) -> str:
  shown = ", ".join(str(v) for v in values[:_MAX_LISTED])
  more = len(values) - _MAX_LISTED
  return shown + (f" and {more} more" if more > 0 else "")


def _class_ids(text: str, spec: str) -> tuple[int, ...]:
  ids: list[int] = []
  for part in text.split(","):
    first, _, last = part.partition("-")
    if last and int(last) < int(first):
      raise errors.InvalidInputError(
        f"evals.query_gallery={spec!r}: class range {part!r} runs backwards."
      )
    ids.extend(range(int(first), int(last or first) + 1))
  if len(set(ids)) != len(ids):
    raise errors.InvalidInputError(
      f"evals.query_gallery={spec!r}: {text!r} repeats a class."
    )
  return tuple(ids)


def parse(spec: str | None) -> Protocol | None:
  """The protocol named by ``spec``; None is leave-one-out.

  Raises:
    ValueError: a malformed value, naming the accepted forms.
  """
  if spec is None:
    return None
  kind, _, rest = str(spec).partition(":")
  query, slash, gallery = rest.partition("/")
  if kind == "per_class" and rest.isdigit() and int(rest) >= 1:
    return Protocol("per_class", per_class=int(rest))
  if kind == "splits" and slash and query and gallery:
    names = (query, gallery)
    if "/" in gallery or any("," in n or "+" in n for n in names):
      raise errors.InvalidInputError(
        f"evals.query_gallery={spec!r}: one split each; {_HELP}"
      )
    if query == gallery:
      raise errors.InvalidInputError(
        f"evals.query_gallery={spec!r} names split {query!r} twice: the "
        "query and gallery splits must differ ('classes:Q/G' shares images)."
      )
    return Protocol("splits", query=(query,), gallery=(gallery,))
  if (
    kind == "classes"
    and slash
    and _CLASS_LIST.match(query)
    and _CLASS_LIST.match(gallery)
  ):
    queries, galleries = _class_ids(query, spec), _class_ids(gallery, spec)
    outside = sorted(set(queries) - set(galleries))
    if outside:
      raise errors.InvalidInputError(
        f"evals.query_gallery={spec!r}: query classes {outside} are not in "
        "the gallery, so their queries could never be answered; put every "
        "query class in G too."
      )
    return Protocol("classes", query=queries, gallery=galleries)
  raise errors.InvalidInputError(f"evals.query_gallery={spec!r}; {_HELP}")


def first_per_class(
  labels: np.ndarray, per_class: int
) -> tuple[np.ndarray, np.ndarray]:
  """(query indices, gallery indices): the first ``per_class`` items of each
  class (in the set's order) are queries, the others the gallery.

  A class with at most ``per_class`` items has no gallery item: its queries
  count as misses in Recall@K and are left out of MAP@R (R = 0).
  """
  labels = np.asarray(labels)
  order = np.argsort(labels, kind="stable")
  sorted_labels = labels[order]
  starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
  position = np.empty(len(labels), np.int64)
  position[order] = np.arange(len(labels)) - starts
  is_query = position < per_class
  return np.flatnonzero(is_query), np.flatnonzero(~is_query)


def check_available(
  protocol: Protocol,
  split_names: Sequence[str],
  classes: Sequence[int],
  spec: str,
) -> None:
  """Raises ValueError when the dataset cannot serve ``protocol``.

  Args:
    protocol: a 'splits' or 'classes' protocol from `parse` (the others
      need nothing of the dataset).
    split_names: the dataset's tfds splits (`sources.split_names`).
    classes: the class ids of the evaluated split.
    spec: the config value, for the message.
  """
  if protocol.kind == "splits":
    missing = [
      s for s in protocol.query + protocol.gallery if s not in split_names
    ]
    if missing:
      raise errors.InvalidInputError(
        f"evals.query_gallery={spec!r} names split(s) {missing}, but the "
        f"dataset's splits are {list(split_names)} (an image folder's are its "
        "top-level folders, e.g. ROOT/query/ and ROOT/gallery/)."
      )
    return
  outside = sorted(set(protocol.gallery) - set(classes))
  if outside:
    raise errors.InvalidInputError(
      f"evals.query_gallery={spec!r} names classes {outside} that the "
      f"evaluated split does not hold (its classes: {_listed(classes)}); name "
      "classes of the split, or evaluate another split."
    )


def select(
  protocol: Protocol,
  labels: np.ndarray,
  source_splits: np.ndarray | None,
  spec: str,
) -> tuple[np.ndarray, np.ndarray, bool]:
  """The query and gallery rows of an embedded split.

  Args:
    protocol: from `parse` (not None).
    labels: (N,) class ids of the split's images.
    source_splits: (N,) the tfds split name of each image (needed by
      'splits:Q/G' only).
    spec: the config value, for messages.

  Returns:
    (queries, gallery, shared): index arrays into the split; with ``shared``
    every query is also a gallery item, and ``queries`` holds positions in
    ``gallery`` (each query is left out of its own neighbours) instead of
    positions in the split.

  Raises:
    ValueError: an empty query set or gallery, naming what is there.
  """
  labels = np.asarray(labels)
  shared = False
  if protocol.kind == "per_class":
    queries, gallery = first_per_class(labels, protocol.per_class)
  elif protocol.kind == "splits":
    if source_splits is None:
      raise errors.InvalidInputError(
        f"evals.query_gallery={spec!r} needs the tfds split of each image."
      )
    source_splits = np.asarray(source_splits)
    queries = np.flatnonzero(np.isin(source_splits, protocol.query))
    gallery = np.flatnonzero(np.isin(source_splits, protocol.gallery))
  else:
    gallery = np.flatnonzero(np.isin(labels, protocol.gallery))
    queries = np.flatnonzero(np.isin(labels[gallery], protocol.query))
    shared = True
  if not len(queries) or not len(gallery):
    if protocol.kind == "splits":
      held = f"its images come from splits {sorted(set(source_splits))}"
    else:
      held = f"its classes: {_listed(np.unique(labels).tolist())}"
    raise errors.InvalidInputError(
      f"evals.query_gallery={spec!r} leaves {len(queries)} queries and a "
      f"gallery of {len(gallery)} in the evaluated split ({held})."
    )
  return queries, gallery, shared
