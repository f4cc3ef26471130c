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
"""Tests of parallel.py: the mesh, device counts and global batches."""

import jax
import numpy as np
from absl.testing import absltest

from proxy_nca_jax import parallel


class ParallelTest(absltest.TestCase):
  def test_mesh_spans_all_devices(self):
    mesh = parallel.create_mesh()
    self.assertEqual(mesh.size, jax.device_count())
    self.assertEqual(jax.device_count(), 8)  # tests/conftest.py

  def test_cpu_device_count_divides_every_batch(self):
    # Hand-worked: 64 and 1024 split over 2 of 2 cores; over 4 of 6 (6 and
    # 5 divide neither 64 nor 1024); 30 and 1024 only over 2; 7 over 1.
    self.assertEqual(parallel.cpu_device_count((64, 1024), 2), 2)
    self.assertEqual(parallel.cpu_device_count((64, 1024), 6), 4)
    self.assertEqual(parallel.cpu_device_count((30, 1024), 16), 2)
    self.assertEqual(parallel.cpu_device_count((7,), 8), 7)
    self.assertEqual(parallel.cpu_device_count((64,), 0), 1)

  def test_indivisible_batch_is_a_clear_error(self):
    mesh = parallel.create_mesh()
    with self.assertRaisesRegex(
      ValueError,
      r"input.batch_size=12 does not divide over the 8 devices.*"
      r"--config.input.batch_size=8 or 16",
    ):
      parallel.check_global_batch(12, mesh, "input.batch_size")
    parallel.check_global_batch(64, mesh, "input.batch_size")

  def test_global_batch_is_sharded_over_devices(self):
    mesh = parallel.create_mesh()
    local = {"x": np.arange(16, dtype=np.float32).reshape(16, 1)}
    out = parallel.global_batch(local, mesh)["x"]
    self.assertLen(out.addressable_shards, 8)
    np.testing.assert_array_equal(out.addressable_shards[1].data, [[2], [3]])
    np.testing.assert_array_equal(np.asarray(out), local["x"])


if __name__ == "__main__":
  absltest.main()
