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
"""The native kernels: their build and cache, and each against a reference.

`count_before` (rows and columns) and XLA's twin in counting_tiles are
checked against ranks read off a NumPy sort of each query's items by
(similarity descending, gallery index ascending): positions in a sorted
order, not the comparisons the kernels make. make test installs g++ (the
Makefile's test-packages), so here the kernels must build.
"""

import os
import pathlib
import tempfile
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from proxy_nca_jax import native
from proxy_nca_jax.evaluation import counting_tiles
from proxy_nca_jax.native import library
from tests.testing import native_kernels


def _reference_counts(sims, thresholds, threshold_index, item_index, num):
  """(Q, M): items before each threshold, by position in a sorted order.

  Each query's items and a threshold are sorted together by (similarity
  descending, index ascending; the threshold first among equal keys: the
  item that is the positive itself is not before it); the threshold's
  count is the items sorted before it.
  """
  q, width = thresholds.shape
  counts = np.zeros((q, width), np.int64)
  for a in range(q):
    for m in range(num):
      s = np.append(sims[a], thresholds[a, m])
      index = np.append(item_index, threshold_index[a, m]).astype(np.int64)
      item = np.append(np.ones(len(item_index)), 0)
      order = np.lexsort((item, index, -s.astype(np.float64)))
      counts[a, m] = np.flatnonzero(order == len(item_index))[0]
  return counts


def _case(rng, rows, cols, width, columns, ties):
  """A tile, its queries' thresholds and the gallery indices of its items."""
  sims = rng.normal(size=(rows, cols)).astype(np.float32)
  if ties == "rounded":  # Few distinct values: many comparisons are ties.
    sims = np.round(sims * 2) / 2
  elif ties == "constant":  # Only the gallery indices order the items.
    sims = np.full_like(sims, 0.5)
  queries, items = (cols, rows) if columns else (rows, cols)
  query_sims = sims.T if columns else sims
  # Thresholds are similarities of the query's own items, and sometimes a
  # value no item has, or +inf (slots beyond R).
  pick = rng.integers(0, items, size=(queries, width))
  thresholds = np.take_along_axis(query_sims, pick, axis=1)
  item_index = rng.permutation(10 * items)[:items].astype(np.int32)
  threshold_index = item_index[pick]
  off = rng.random((queries, width)) < 0.2
  thresholds[off] += 0.25
  thresholds[:, -1] = np.inf
  return sims, thresholds, threshold_index, item_index


class CountBeforeTest(parameterized.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    native_kernels.require("counting")

  @parameterized.product(
    shape=((1, 1), (5, 3), (37, 100), (70, 129), (16, 64)),
    columns=(False, True),
    ties=("none", "rounded", "constant"),
  )
  def test_native_and_xla_match_the_sorted_reference(
    self, shape, columns, ties
  ):
    rng = np.random.default_rng(hash((shape, columns, ties)) % 2**32)
    sims, thresholds, threshold_index, item_index = _case(
      rng, *shape, width=6, columns=columns, ties=ties
    )
    for num in (0, 3, 6):
      want = _reference_counts(
        sims.T if columns else sims,
        thresholds,
        threshold_index,
        item_index,
        num,
      )
      got = native.count_before(
        sims, thresholds, threshold_index, item_index, num, columns=columns
      )
      np.testing.assert_array_equal(np.asarray(got), want, f"native {num}")
      xla = jax.jit(counting_tiles._count_before)(
        sims.T if columns else sims,
        thresholds,
        threshold_index,
        item_index,
        num,
      )
      np.testing.assert_array_equal(np.asarray(xla), want, f"xla {num}")

  def test_a_large_tile_under_jit_and_shard_map(self):
    # Many tasks on the thread pool, each device calling the kernel at once.
    rng = np.random.default_rng(7)
    cases = [_case(rng, 300, 1030, 4, False, "none") for _ in range(8)]
    stacked = [np.stack(parts) for parts in zip(*cases, strict=True)]
    mesh = jax.make_mesh((8,), ("d",), axis_types=(jax.sharding.AxisType.Auto,))
    spec = jax.sharding.PartitionSpec("d")

    def per_device(sims, thresholds, threshold_index, item_index):
      return native.count_before(
        sims[0],
        thresholds[0],
        threshold_index[0],
        item_index[0],
        4,
        columns=False,
      )[None]

    got = jax.jit(
      jax.shard_map(per_device, mesh=mesh, in_specs=(spec,) * 4, out_specs=spec)
    )(*stacked)
    for k, case in enumerate(cases):
      np.testing.assert_array_equal(
        np.asarray(got[k]), _reference_counts(*case, 4), f"device {k}"
      )

  def test_rejects_a_tile_that_disagrees_with_its_thresholds(self):
    with self.assertRaisesRegex(Exception, "disagree"):
      native.count_before(
        jnp.zeros((4, 5)),
        jnp.zeros((3, 2)),
        jnp.zeros((3, 2), jnp.int32),
        jnp.zeros(5, jnp.int32),
        2,
        columns=False,
      ).block_until_ready()


class LibraryTest(absltest.TestCase):
  def test_builds_once_into_the_cache_folder(self):
    with tempfile.TemporaryDirectory() as cache:
      with mock.patch.dict(os.environ, {library.CACHE: cache}):
        first = library.build("counting")
        stamp = first.stat().st_mtime_ns
        second = library.build("counting")
      self.assertEqual(first, second)
      self.assertEqual(second.stat().st_mtime_ns, stamp)
      self.assertTrue(first.is_relative_to(pathlib.Path(cache)))
      # Nothing but the library: no temporaries left beside it.
      self.assertEqual(list(first.parent.iterdir()), [first])

  def test_a_missing_compiler_is_named_with_the_install_step(self):
    with self.assertRaisesRegex(RuntimeError, "apt-get install g\\+\\+"):
      library.build("counting", compiler="no-such-compiler")

  def test_a_failed_build_reports_the_compiler_error(self):
    with tempfile.TemporaryDirectory() as cache:
      broken = pathlib.Path(cache) / "broken.cc"
      broken.write_text("this is not C++\n")
      kernels = library.Kernels((str(broken),), ("Nothing",))
      with (
        mock.patch.dict(os.environ, {library.CACHE: cache}),
        mock.patch.dict(library.KERNELS, {"broken": kernels}),
        self.assertRaisesRegex(
          RuntimeError, "failed \\(it needs g\\+\\+.*\\):\n.*error"
        ),
      ):
        library.build("broken")
      # The failed build leaves no library and no temporary behind.
      self.assertEqual(list(pathlib.Path(cache).rglob("*.so*")), [])

  def test_the_switch_turns_the_kernels_off(self):
    with mock.patch.dict(os.environ, {library.SWITCH: "0"}):
      self.assertFalse(library.available.__wrapped__("counting"))

  def test_falls_back_with_a_warning_when_the_build_fails(self):
    with (
      mock.patch.dict(os.environ, {library.SWITCH: "1"}),
      mock.patch.object(
        library, "build", side_effect=RuntimeError("no g++ on the PATH")
      ),
      self.assertLogs(level="WARNING") as logs,
    ):
      self.assertFalse(library.available.__wrapped__("counting"))
    self.assertIn("no g++ on the PATH", "\n".join(logs.output))


if __name__ == "__main__":
  absltest.main()
