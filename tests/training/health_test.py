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
"""Tests of training/health.py on hand-made metrics (faults_test.py runs the
same watches inside real training runs)."""

import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from proxy_nca_jax.training import health


class FirstNonFiniteTest(absltest.TestCase):
  def test_keeps_the_first_bad_step(self):
    first = jnp.int32(-1)
    good = {"loss": jnp.float32(1.0), "grad_norm": jnp.float32(2.0)}
    bad = {"loss": jnp.float32(np.nan), "grad_norm": jnp.float32(2.0)}
    first = health.first_non_finite(first, 1, good)
    self.assertEqual(int(first), -1)
    first = health.first_non_finite(first, 2, bad)
    self.assertEqual(int(first), 2)
    first = health.first_non_finite(first, 3, bad)
    self.assertEqual(int(first), 2)


class CheckFiniteTest(absltest.TestCase):
  def test_finite_metrics_pass(self):
    health.check_finite(5, {"loss": 0.5}, last_ckpt=None, first_bad=-1)

  def test_names_the_first_bad_step_and_the_checkpoint_to_resume(self):
    with self.assertRaisesRegex(
      FloatingPointError,
      r"at step 3 \(the first non-finite one; found at step 5\).*"
      r"checkpoint \(step 2\) is intact",
    ):
      health.check_finite(5, {"loss": 0.5}, last_ckpt=2, first_bad=3)

  def test_without_checkpoint_says_to_start_again(self):
    with self.assertRaisesRegex(
      FloatingPointError, r"'loss': inf.*at step 4\. .*start again"
    ):
      health.check_finite(4, {"loss": np.inf}, last_ckpt=None, first_bad=-1)


class ProxyNormWatchTest(absltest.TestCase):
  def test_warns_once_past_the_factor(self):
    watch = health.ProxyNormWatch(start_max=2.0)
    with self.assertNoLogs(level="WARNING"):
      watch.check(1, {"proxy_norm_max": 200.0})  # Exactly 100x: not yet.
    with self.assertLogs(level="WARNING") as logs:
      watch.check(2, {"proxy_norm_max": 201.0})
    self.assertIn("running away", logs.output[0])
    with self.assertNoLogs(level="WARNING"):
      watch.check(3, {"proxy_norm_max": 1e6})


class StallWatchTest(absltest.TestCase):
  def test_warns_at_the_second_zero_step_in_a_row(self):
    watch = health.StallWatch("static")
    zero = {"loss": 0.0, "grad_norm": 0.0}
    with self.assertNoLogs(level="WARNING"):
      watch.check(2, zero)
      watch.check(4, {"loss": 0.1, "grad_norm": 0.3})  # Resets the count.
      watch.check(6, zero)
    with self.assertLogs(level="WARNING") as logs:
      watch.check(8, zero)
    self.assertIn("exactly 0 at steps 6 and 8", logs.output[0])
    self.assertIn("input.samples_per_class", logs.output[0])


if __name__ == "__main__":
  absltest.main()
