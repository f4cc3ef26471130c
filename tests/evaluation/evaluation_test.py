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
"""Tests of the evaluation package's retrieval metrics and its summary.

The retrieval metrics (evaluation/__init__.py, counting.py, sorted_prefix.py)
are checked against a brute-force float64 NumPy transcription of their
definitions (tests/testing/references.py: full similarity matrix with exact
copies tied on every CPU, self removed, stable argsort), which is checked
here too; so are the similarity engine (similarity.py) and
``evaluate_embeddings``. k-means is tested in clustering_test.py, NMI and
AMI in mutual_information_test.py, the tables in tables_test.py and the
query/gallery protocols in query_gallery_test.py.
"""

import contextlib
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from proxy_nca_jax import evaluation, native
from proxy_nca_jax.evaluation import (
  counting,
  counting_tiles,
  similarity,
  sorted_prefix,
)
from tests.testing import embedding_cases, references

_KS = (1, 2, 4, 8)


def _random_case(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  return embedding_cases.unit(rng.normal(size=(200, 16))), rng.integers(
    0, 10, size=200
  )


def _duplicates_case(seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  base = embedding_cases.unit(rng.normal(size=(50, 8)))
  rows = rng.integers(0, 50, size=180)
  # Copies of one vector carry different labels: only the tie rule decides.
  return base[rows], rng.integers(0, 4, size=180)


def _grid_case(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
  """Unit vectors with four entries of +-1/2: every dot product is exact."""
  rng = np.random.default_rng(seed)
  x = np.zeros((160, 8), np.float32)
  for row in x:
    row[rng.choice(8, size=4, replace=False)] = rng.choice([-0.5, 0.5], 4)
  return x, rng.integers(0, 5, size=160)


def _singleton_case(seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
  x, labels = _random_case(seed)
  labels = labels.copy()
  labels[17] = 99  # The only image of its class.
  labels[150] = -3  # Another one; non-contiguous, negative label values.
  return x, labels


def _sop_like_case(seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
  """Classes of 1 to 12 items, like Stanford Online Products (and one of 1)."""
  rng = np.random.default_rng(seed)
  sizes = rng.integers(2, 13, size=40)
  sizes[7] = 1
  labels = rng.permutation(np.repeat(np.arange(40) * 7 - 50, sizes))
  centres = rng.normal(size=(40, 16))
  x = centres[(labels + 50) // 7] + 1.2 * rng.normal(size=(len(labels), 16))
  return embedding_cases.unit(x), labels


# Both exact algorithms: every R counted (with the native counting kernel,
# and with XLA's), or every R through sorted prefixes; for a set that is its
# own gallery, also counted screened in bfloat16 (native/screened_counting).
_ALGORITHMS = ("counting", "counting_xla", "sorted_prefix")
_SYMMETRIC_ALGORITHMS = (*_ALGORITHMS, "counting_screened")


@contextlib.contextmanager
def _using(algorithm: str):
  """Makes `evaluation` take `algorithm` for every R."""
  max_counted = 0 if algorithm == "sorted_prefix" else 10**9
  with contextlib.ExitStack() as stack:
    stack.enter_context(
      mock.patch.object(evaluation, "MAX_COUNTED_R", max_counted)
    )
    if algorithm == "counting_xla":
      stack.enter_context(
        mock.patch.object(counting_tiles, "counts_natively", lambda _: False)
      )
    if algorithm == "counting_screened":
      # The default rule, at any size and on any CPU (without AVX-512 BF16
      # the kernel's portable loop runs).
      flags = native.library.cpu_flags() | {"avx512_bf16"}
      stack.enter_context(mock.patch.object(counting, "SCREENED_ITEMS", 0))
      stack.enter_context(
        mock.patch.object(native.library, "cpu_flags", lambda: flags)
      )
    yield


def _with_algorithm(cases, algorithms=_ALGORITHMS):
  """Each (name, make_case, block_size) case with each algorithm; XLA's
  counting (the fallback) only where the set spans several blocks, the
  screened one (which has no blocks) only where it does not."""
  return [
    (f"{name}_{algorithm}", *rest, algorithm)
    for name, *rest in cases
    for algorithm in algorithms
    if algorithm != "counting_xla" or rest[-1] < 2048
    if algorithm != "counting_screened" or rest[-1] == 2048
  ]


class RetrievalMetricsTest(parameterized.TestCase):
  @parameterized.named_parameters(
    _with_algorithm(
      [
        ("random", _random_case, 2048),
        ("blobs", embedding_cases.overlapping_blobs, 2048),
        ("duplicated_embeddings", _duplicates_case, 2048),
        ("grid_ties", _grid_case, 2048),
        ("singleton_class", _singleton_case, 2048),
        ("sop_like", _sop_like_case, 2048),
        ("block_not_dividing_n", _random_case, 37),
        ("ties_in_blocks", _grid_case, 9),
        ("duplicates_in_blocks", _duplicates_case, 7),
        ("sop_like_in_blocks", _sop_like_case, 10),
        ("block_of_three", _duplicates_case, 3),
      ],
      _SYMMETRIC_ALGORITHMS,
    )
  )
  def test_matches_brute_force_reference(
    self, make_case, block_size, algorithm
  ):
    x, labels = make_case()
    ks = (1, 2, 4, 8, 16, 500)  # 500 > N - 1: every positive counts.
    with _using(algorithm):
      result = evaluation.retrieval_metrics(
        x, labels, ks=ks, block_size=block_size
      )
    expected = references.retrieval_metrics(x, labels, ks)
    self.assertSameElements(result, expected)
    for key, value in expected.items():
      self.assertIsInstance(result[key], float)
      self.assertAlmostEqual(result[key], value, delta=1e-6, msg=key)

  @parameterized.named_parameters(
    _with_algorithm(
      [
        ("random", _random_case, 2048),
        ("ties", _grid_case, 2048),
        ("duplicates_in_blocks", _duplicates_case, 13),
        ("sop_like_in_blocks", _sop_like_case, 16),
      ]
    )
  )
  def test_separate_gallery_matches_brute_force(
    self, make_case, block_size, algorithm
  ):
    x, labels = make_case()
    labels = labels.copy()
    # Queries of a class the gallery lacks (R = 0), gallery classes without
    # queries, and a query duplicated in the gallery (never excluded).
    queries, gallery = np.arange(0, len(x), 3), np.arange(1, len(x), 2)
    labels[queries[:2]] = 1000
    query_x = x[queries].copy()
    query_x[5] = x[gallery[4]]
    ks = (1, 3, 10, len(gallery), len(gallery) + 5)
    with _using(algorithm):
      result = evaluation.retrieval_metrics(
        query_x,
        labels[queries],
        gallery=x[gallery],
        gallery_labels=labels[gallery],
        ks=ks,
        block_size=block_size,
      )
    expected = references.retrieval_metrics(
      query_x, labels[queries], ks, x[gallery], labels[gallery]
    )
    self.assertSameElements(result, expected)
    for key, value in expected.items():
      self.assertAlmostEqual(result[key], value, delta=1e-6, msg=key)

  @parameterized.named_parameters(
    ("sop_like", _sop_like_case, 10), ("duplicates", _duplicates_case, 13)
  )
  def test_algorithms_agree_query_by_query(self, make_case, block_size):
    x, labels = make_case()
    scores = []
    for algorithm in _SYMMETRIC_ALGORITHMS:
      with _using(algorithm):
        scores.append(
          evaluation.per_query_scores(
            x, labels, max_k=len(x), block_size=block_size
          )
        )
    for other in scores[1:]:
      for key in ("first_positive_rank", "hits", "r"):
        np.testing.assert_array_equal(scores[0][key], other[key], key)
      np.testing.assert_allclose(
        scores[0]["precision_sum"], other["precision_sum"], atol=1e-12
      )

  def test_one_and_eight_devices_agree(self):
    x, labels = _sop_like_case()
    self.assertLen(jax.devices(), 8)
    one = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
    eight = jax.make_mesh((8,), ("data",))
    scores = [
      evaluation.per_query_scores(x, labels, block_size=12, mesh=mesh)
      for mesh in (one, eight)
    ]
    for key in scores[0]:
      np.testing.assert_array_equal(scores[0][key], scores[1][key], key)

  def test_both_counting_passes_share_one_compiled_sweep(self):
    # Pass 1 reads positives' similarities and pass 2 compares every tile
    # with them: bit-identical tiles need the same compiled program.
    x, labels = _sop_like_case()
    counting_tiles.tile_sweep.cache_clear()
    evaluation.retrieval_metrics(x, labels, block_size=20)
    (sweep,) = [
      counting_tiles.tile_sweep(
        mesh,
        20,
        20,
        12,
        True,
        native_counts=counting_tiles.counts_natively(mesh),
      )
      for mesh in [counting_tiles.tile_mesh(None)]
    ]
    self.assertEqual(counting_tiles.tile_sweep.cache_info().currsize, 1)
    self.assertEqual(sweep._cache_size(), 1)

  def test_counting_handles_every_k_up_to_the_gallery(self):
    x, labels = _sop_like_case()
    n = len(x)
    ks = tuple(range(1, n + 2))
    result = evaluation.retrieval_metrics(x, labels, ks=ks, block_size=32)
    expected = references.retrieval_metrics(x, labels, ks)
    for k in ks:
      key = f"recall@{k}"
      self.assertAlmostEqual(result[key], expected[key], delta=1e-12, msg=key)

  def test_rejects_bad_gallery(self):
    x, labels = _random_case()
    with self.assertRaisesRegex(ValueError, "gallery_labels"):
      evaluation.retrieval_metrics(x, labels, gallery=x)
    with self.assertRaisesRegex(ValueError, "without a gallery"):
      evaluation.retrieval_metrics(x, labels, gallery_labels=labels)
    with self.assertRaisesRegex(ValueError, "dimension"):
      evaluation.retrieval_metrics(
        x, labels, gallery=x[:, :3], gallery_labels=labels
      )

  def test_cases_contain_exact_ties(self):
    # Guards the tie cases above: they must really tie, and in float32 too.
    for make_case in (_duplicates_case, _grid_case):
      x, _ = make_case()
      for sim in (
        references.similarities(x, x),
        np.asarray(similarity.similarities(x, x)),
      ):
        rows = [np.delete(row, i) for i, row in enumerate(sim)]
        ties = [len(row) - len(np.unique(row)) for row in rows]
        self.assertGreater(np.mean(ties), 1.0)

  def test_hand_computed_angles(self):
    # Unit vectors at 0, 10, 25, 45 and 100 degrees; cosine similarity falls
    # with the angle between them, so the neighbour orders are:
    #   q0 (class 0, R=2): 1 2 3 4 -> correct 1 0 1 0: rank 0, R-P 1/2, AP 1/2
    #   q1 (class 0, R=2): 0 2 3 4 -> correct 1 0 1 0: rank 0, R-P 1/2, AP 1/2
    #   q2 (class 1, R=1): 1 3 0 4 -> correct 0 0 0 1: rank 3, R-P 0,   AP 0
    #   q3 (class 0, R=2): 2 1 0 4 -> correct 0 1 1 0: rank 1, R-P 1/2, AP 1/4
    #   q4 (class 1, R=1): 3 2 1 0 -> correct 0 1 0 0: rank 1, R-P 0,   AP 0
    # Recall@1 = 2/5, Recall@2 = 4/5, Recall@4 = 1, MAP@R = 1.25/5 = 0.25,
    # R-Precision = 1.5/5 = 0.3.
    angles = np.deg2rad([0.0, 10.0, 25.0, 45.0, 100.0])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = np.array([0, 0, 1, 0, 1])
    result = evaluation.retrieval_metrics(x, labels, ks=(1, 2, 4))
    expected = {
      "recall@1": 0.4,
      "recall@2": 0.8,
      "recall@4": 1.0,
      "precision@1": 0.4,
      "map@r": 0.25,
      "r_precision": 0.3,
    }
    self.assertSameElements(result, expected)
    for key, value in expected.items():
      self.assertAlmostEqual(result[key], value, places=6, msg=key)

  def test_hand_computed_ties_go_to_the_lower_index(self):
    # x0 = x1 = x2 = e0 and x3 = e1, classes 0 1 0 1. Equal similarities are
    # ranked by index:
    #   q0 (class 0): 1 (sim 1) 2 (sim 1) 3 (sim 0) -> first positive rank 1
    #   q1 (class 1): 0 (1) 2 (1) 3 (0)             -> rank 2
    #   q2 (class 0): 0 (1) 1 (1) 3 (0)             -> rank 0
    #   q3 (class 1): 0 (0) 1 (0) 2 (0)             -> rank 1
    # Recall@1 = 1/4, Recall@2 = 3/4; R = 1 for all, MAP@R = R-P = 1/4.
    x = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 1, 0, 1])
    result = evaluation.retrieval_metrics(x, labels, ks=(1, 2, 3))
    self.assertEqual(result["recall@1"], 0.25)
    self.assertEqual(result["recall@2"], 0.75)
    self.assertEqual(result["recall@3"], 1.0)
    self.assertEqual(result["map@r"], 0.25)
    self.assertEqual(result["r_precision"], 0.25)

  def test_signed_zero_similarities_tie(self):
    # In one dimension the dot product is a plain product: 1 * -0.0 = -0.0,
    # which must tie with +0.0 (index order), not rank below it.
    x = np.array([[1.0], [-0.0], [0.0]])
    labels = np.array([0, 0, 1])
    result = evaluation.retrieval_metrics(x, labels, ks=(1,))
    expected = references.retrieval_metrics(x, labels, (1,))
    # q0: 1 (-0.0, hit) before 2 (+0.0); q1: 0 (hit) before 2; q2 has no
    # positive. Ranking -0.0 below +0.0 would turn q0 into a miss.
    self.assertEqual(expected["recall@1"], 2 / 3)
    self.assertEqual(result, expected)

  def test_only_singletons(self):
    x, _ = _random_case()
    result = evaluation.retrieval_metrics(x[:20], np.arange(20), ks=(1, 50))
    self.assertEqual(result["recall@1"], 0.0)
    self.assertEqual(result["recall@50"], 0.0)  # Even with K > N.
    self.assertTrue(np.isnan(result["map@r"]))
    self.assertTrue(np.isnan(result["r_precision"]))

  def test_blocks_compile_once_and_agree(self):
    x, labels = embedding_cases.overlapping_blobs()
    compiled = sorted_prefix._ranking_keys._cache_size()
    small_blocks = evaluation.retrieval_metrics(x, labels, block_size=23)
    # 240 queries in blocks of 23: 11 calls, the last one padded, 1 compile.
    self.assertEqual(sorted_prefix._ranking_keys._cache_size(), compiled + 1)
    one_block = evaluation.retrieval_metrics(x, labels, block_size=240)
    self.assertEqual(small_blocks, one_block)

  def test_block_size_is_capped_by_memory(self):
    x, labels = _random_case()
    with mock.patch.object(evaluation, "MAX_COUNTED_R", 0):
      with mock.patch.object(sorted_prefix, "_KEYS_PER_CALL", 200 * 7):
        capped = evaluation.retrieval_metrics(x, labels, block_size=2048)
      self.assertEqual(capped, evaluation.retrieval_metrics(x, labels))

  def test_accepts_jax_arrays_and_is_deterministic(self):
    x, labels = _random_case()
    from_numpy = evaluation.retrieval_metrics(x, labels, ks=_KS)
    from_jax = evaluation.retrieval_metrics(
      jnp.asarray(x), jnp.asarray(labels), ks=_KS
    )
    self.assertEqual(from_numpy, from_jax)

  def test_accepts_embeddings_sharded_over_devices(self):
    x, labels = _random_case()
    self.assertLen(jax.devices(), 8)
    mesh = jax.make_mesh((8,), ("data",))
    sharded = jax.device_put(
      x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    )
    self.assertEqual(
      evaluation.retrieval_metrics(sharded, labels),
      evaluation.retrieval_metrics(x, labels),
    )

  @parameterized.named_parameters(
    ("embeddings_not_2d", np.zeros((4,)), np.zeros(4, int), {}),
    ("labels_wrong_length", np.zeros((4, 2)), np.zeros(3, int), {}),
    ("float_labels", np.zeros((4, 2)), np.zeros(4), {}),
    ("one_item", np.zeros((1, 2)), np.zeros(1, int), {}),
    ("nan", np.full((4, 2), np.nan), np.zeros(4, int), {}),
    ("k_zero", np.zeros((4, 2)), np.zeros(4, int), {"ks": (0, 1)}),
    ("block_zero", np.zeros((4, 2)), np.zeros(4, int), {"block_size": 0}),
  )
  def test_rejects_bad_arguments(self, x, labels, kwargs):
    with self.assertRaises(ValueError):
      evaluation.retrieval_metrics(x, labels, **kwargs)


def _position_dependent_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Dot products whose float64 rounding depends on the output position.

  Odd columns sum their products front to back, even ones back to front,
  as a BLAS with different kernels for different tiles might.
  """
  out = np.zeros((len(a), len(b)))
  for i, row in enumerate(np.asarray(a, np.float64)):
    for j, col in enumerate(np.asarray(b, np.float64)):
      products = row * col if j % 2 else (row * col)[::-1]
      for p in products:
        out[i, j] += p
  return out


def _copies_case(
  num_items: int, dim: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """Copies of a few vectors everywhere, and labels that differ among them.

  Every row is one of ``num_items // 6`` distinct unit vectors; the first
  vector also fills rows 0-2, 6-8 and the last two, so copies sit on the
  edges of tiles of 1, 3 and 7 and in the padded last tile.
  """
  rng = np.random.default_rng(seed)
  distinct = embedding_cases.unit(
    rng.normal(size=(max(num_items // 6, 2), dim))
  )
  rows = rng.integers(0, len(distinct), size=num_items)
  rows[[0, 1, 2, 6, 7, 8, num_items - 2, num_items - 1]] = 0
  return distinct[rows], rng.integers(0, 4, size=num_items)


def _float32_matmul(reverse: bool) -> references.Matmul:
  """Dot products rounded in float32 after every product and every sum,
  over the features in order or in reverse: two valid float32 engines."""

  def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    features = range(a.shape[1])[:: -1 if reverse else 1]
    out = np.zeros((len(a), len(b)), np.float32)
    for i, j in np.ndindex(out.shape):
      for k in features:
        out[i, j] = np.float32(out[i, j] + np.float32(a[i, k] * b[j, k]))
    return out

  return matmul


class ReferenceTest(absltest.TestCase):
  def test_copies_tie_whatever_the_matmul(self):
    x, labels = _duplicates_case()
    # The position-dependent matmul splits copies when used directly...
    direct = _position_dependent_matmul(x, x)
    group = np.unique(x, axis=0, return_inverse=True)[1].reshape(-1)
    split = sum(
      len(np.unique(row[group == g])) > 1
      for row in direct
      for g in np.unique(group)
    )
    self.assertGreater(split, 0)
    # ... but the reference computes each distinct pair once.
    ks = (1, 2, 4, 8)
    self.assertEqual(
      references.retrieval_metrics(
        x, labels, ks, matmul=_position_dependent_matmul
      ),
      references.retrieval_metrics(x, labels, ks),
    )

  def test_metric_bounds_cover_every_float32_order_of_a_near_tie(self):
    # A query, a negative and a positive 1 ulp away from each other in
    # three features: their exact similarities differ by far less than
    # float32's rounding, and summing the features forwards or backwards
    # (two CPUs' float32 dots) ranks them differently for some seed.
    for seed in range(200):
      rng = np.random.default_rng(seed)
      query = embedding_cases.unit(rng.normal(size=(1, 16)))[0]
      positive = embedding_cases.unit(
        query[None] + 0.05 * rng.normal(size=(1, 16))
      )[0]
      negative = positive.copy()
      for k in rng.choice(16, 3, replace=False):
        toward = np.float32(rng.choice([-1, 1]) * np.inf)
        negative[k] = np.nextafter(negative[k], toward)
      x = np.stack([query, negative, positive]).astype(np.float32)
      labels = np.array([0, 1, 0])
      got = [
        references.query_gallery_metrics(
          x, labels, [0], [1, 2], (1,), matmul=_float32_matmul(reverse)
        )
        for reverse in (False, True)
      ]
      if got[0]["map@r"] != got[1]["map@r"]:
        break
    else:
      self.fail("no near-tie that the summation order decides")
    exact = references.similarities(x[:1], x[1:])
    bound = references.float32_dot_error_bound(x[:1], x[1:])
    for reverse in (False, True):
      np.testing.assert_array_less(
        np.abs(_float32_matmul(reverse)(x[:1], x[1:]) - exact), bound
      )
    lowest, highest = references.query_gallery_metric_bounds(
      x, labels, [0], [1, 2], (1,)
    )
    self.assertEqual((lowest["map@r"], highest["map@r"]), (0.0, 1.0))
    for summing_order in got:
      for key, value in summing_order.items():
        self.assertBetween(value, lowest[key], highest[key], msg=key)

  def test_metric_bounds_are_the_metrics_when_float32_can_order_all(self):
    rng = np.random.default_rng(5)
    x = embedding_cases.unit(rng.normal(size=(60, 8))).astype(np.float32)
    labels = rng.integers(0, 4, 60)
    queries, gallery = np.arange(60) < 20, np.arange(60) >= 20
    lowest, highest = references.query_gallery_metric_bounds(
      x, labels, queries, gallery, (1, 2, 4)
    )
    want = references.query_gallery_metrics(
      x, labels, queries, gallery, (1, 2, 4)
    )
    self.assertEqual(lowest, want)
    self.assertEqual(highest, want)

  def test_fsum_matmul_is_correctly_rounded(self):
    # 1e16 + 1 - 1e16 is 1 exactly; a left-to-right float64 sum gives 0.
    a = np.array([[1e16, 1.0, -1e16]])
    np.testing.assert_array_equal(
      references.fsum_matmul(a, np.ones((1, 3))), [[1.0]]
    )


class SimilarityEngineTest(parameterized.TestCase):
  """The engine's assumption: similarities do not depend on positions."""

  @parameterized.product(
    shape=((1, 1), (3, 3), (7, 5), (2048, 64)), dim=(8, 13, 64, 67)
  )
  def test_copies_get_identical_similarities(self, shape, dim):
    rng = np.random.default_rng(dim)
    bq, bg = shape
    v = embedding_cases.unit(rng.normal(size=(1, dim)))
    others = embedding_cases.unit(rng.normal(size=(max(bq, bg), dim)))
    # Queries: copies of v at every row; gallery: copies at every column.
    sims = np.asarray(
      jax.jit(similarity.similarities)(np.repeat(v, bq, axis=0), others[:bg])
    )
    np.testing.assert_array_equal(sims, np.broadcast_to(sims[:1], sims.shape))
    sims = np.asarray(
      jax.jit(similarity.similarities)(others[:bq], np.repeat(v, bg, axis=0))
    )
    np.testing.assert_array_equal(
      sims, np.broadcast_to(sims[:, :1], sims.shape)
    )
    # The transposed tile holds the same values (the counting algorithm
    # uses a tile for its rows and, transposed, for its columns).
    sims_t = np.asarray(
      jax.jit(similarity.similarities)(np.repeat(v, bg, axis=0), others[:bq])
    )
    np.testing.assert_array_equal(sims_t.T, sims)

  def test_copies_on_different_devices_get_identical_similarities(self):
    rng = np.random.default_rng(0)
    v = embedding_cases.unit(rng.normal(size=(1, 67)))
    gallery = embedding_cases.unit(rng.normal(size=(24, 67)))
    mesh = jax.make_mesh((8,), ("data",))
    queries = jax.device_put(
      np.repeat(v, 8, axis=0),
      jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")),
    )
    sims = np.asarray(jax.jit(similarity.similarities)(queries, gallery))
    np.testing.assert_array_equal(sims, np.broadcast_to(sims[:1], sims.shape))

  @parameterized.product(block_size=(1, 3, 7, 2048), algorithm=_ALGORITHMS)
  def test_metrics_exact_for_copies_across_tiles_and_devices(
    self, block_size, algorithm
  ):
    x, labels = _copies_case(48 if block_size == 1 else 150, 13, seed=13)
    expected = references.retrieval_per_query(x, labels)
    one = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
    eight = jax.make_mesh((8,), ("data",))
    results = []
    # The set as it is, permuted, and with its features padded by zeros
    # (another vector remainder; the same dot products).
    perm = np.random.default_rng(1).permutation(len(x))
    padded = np.pad(x, ((0, 0), (0, 5)))
    for name, xs, ys, want in (
      ("as is", x, labels, expected),
      ("permuted", x[perm], labels[perm], None),
      ("padded", padded, labels, expected),
    ):
      if want is None:
        want = references.retrieval_per_query(xs, ys)
      for mesh in (one, eight):
        with _using(algorithm):
          got = evaluation.per_query_scores(
            xs, ys, max_k=len(xs), block_size=block_size, mesh=mesh
          )
        for key in ("first_positive_rank", "hits", "r"):
          np.testing.assert_array_equal(got[key], want[key], f"{name} {key}")
        np.testing.assert_allclose(
          got["precision_sum"], want["precision_sum"], rtol=1e-12
        )
        results.append((name, got))
    # Identical, not close: every arrangement of the same set gives the same
    # per-query scores, bit for bit, on 1 and on 8 devices.
    for name, got in results:
      twin = results[0][1] if name != "permuted" else results[2][1]
      for key in got:
        np.testing.assert_array_equal(got[key], twin[key], f"{name} {key}")

  def test_copies_case_ties_and_has_no_near_ties(self):
    # Guards the case: its ranks hinge on exact ties (copies with different
    # labels) and on no gap that float32 rounding could close. A float32
    # dot product of D unit-vector terms is within D * 2^-24 (< 8e-7 here)
    # of the exact one, so gaps above 2e-6 keep their order and the float32
    # engine must agree with the float64 reference exactly.
    for num_items in (48, 150):
      x, labels = _copies_case(num_items, 13, seed=13)
      sim = references.similarities(x, x)
      gaps = min(np.diff(np.unique(row)).min() for row in sim)
      self.assertGreater(gaps, 2e-6)
      copies = sim == sim.diagonal()[:, None]
      copies &= ~np.eye(num_items, dtype=bool)
      self.assertGreater(np.sum(copies & (labels[:, None] != labels)), 20)


class EvaluateEmbeddingsTest(absltest.TestCase):
  def test_clustering_metrics_on_separated_blobs(self):
    x, labels = embedding_cases.separated_blobs(num_clusters=5)
    self.assertEqual(
      evaluation.clustering_metrics(x, labels), {"nmi": 1.0, "ami": 1.0}
    )

  def test_union_of_retrieval_and_clustering(self):
    x, labels = embedding_cases.overlapping_blobs()
    result = evaluation.evaluate_embeddings(
      x, labels, ks=(1, 4), block_size=64, kmeans_restarts=2, kmeans_iters=9
    )
    expected = evaluation.retrieval_metrics(x, labels, ks=(1, 4))
    expected.update(
      evaluation.clustering_metrics(x, labels, num_iters=9, num_restarts=2)
    )
    self.assertEqual(result, expected)
    self.assertSameElements(
      result,
      [
        "recall@1",
        "recall@4",
        "precision@1",
        "r_precision",
        "map@r",
        "nmi",
        "ami",
      ],
    )


if __name__ == "__main__":
  absltest.main()
