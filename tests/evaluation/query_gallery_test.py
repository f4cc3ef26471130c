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
"""Tests of evaluation/query_gallery.py: ``evals.query_gallery``'s forms."""

import numpy as np
from absl.testing import absltest

from proxy_nca_jax.evaluation import query_gallery


class QueryGalleryTest(absltest.TestCase):
  """``evals.query_gallery``: separate query and gallery sets."""

  def test_per_class_takes_the_first_k_of_each_class_in_order(self):
    labels = np.array([3, 1, 3, 3, 1, 7, 1, 3])
    queries, gallery = query_gallery.first_per_class(labels, 2)
    np.testing.assert_array_equal(queries, [0, 1, 2, 4, 5])
    np.testing.assert_array_equal(gallery, [3, 6, 7])

  def test_parses_each_form(self):
    self.assertIsNone(query_gallery.parse(None))
    self.assertEqual(query_gallery.parse("per_class:4").per_class, 4)
    splits = query_gallery.parse("splits:query/gallery")
    self.assertEqual((splits.query, splits.gallery), (("query",), ("gallery",)))
    self.assertTrue(splits.needs_source_splits)
    classes = query_gallery.parse("classes:5-6,9/5-9")
    self.assertEqual(classes.query, (5, 6, 9))
    self.assertEqual(classes.gallery, (5, 6, 7, 8, 9))
    self.assertFalse(classes.needs_source_splits)

  def test_bad_values_are_refused(self):
    for bad in (
      "per_class:0",
      "per_class",
      "halves",
      "per_class:x",
      "splits:query",
      "splits:a/b/c",
      "classes:5-6",
      "classes:a/5",
    ):
      with self.assertRaisesRegex(ValueError, "use None .* 'classes:Q/G'"):
        query_gallery.parse(bad)
    with self.assertRaisesRegex(ValueError, "query classes \\[7\\] are not in"):
      query_gallery.parse("classes:5-7/5-6")
    with self.assertRaisesRegex(ValueError, "runs backwards"):
      query_gallery.parse("classes:6-5/5-9")
    with self.assertRaisesRegex(ValueError, "names split 'a' twice"):
      query_gallery.parse("splits:a/a")

  def test_what_the_data_cannot_serve_is_named(self):
    with self.assertRaisesRegex(ValueError, "\\['gallery'\\].*'train', 'test'"):
      query_gallery.check_available(
        query_gallery.parse("splits:test/gallery"),
        ("train", "test"),
        (5, 6),
        "splits:test/gallery",
      )
    with self.assertRaisesRegex(ValueError, "classes \\[7\\] that the"):
      query_gallery.check_available(
        query_gallery.parse("classes:5/5-7"), ("all",), (5, 6), "classes:5/5-7"
      )


if __name__ == "__main__":
  absltest.main()
