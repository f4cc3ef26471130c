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
"""Tests of checkpointing.py on real files: round trip, retention, leftovers
of a killed save, and the run signature."""

import pathlib
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from proxy_nca_jax import checkpointing, parallel

SIGNATURE = {"model": "convnet_s", "num_proxies": 3}


def make_state(seed: int) -> dict:
  rng = np.random.default_rng(seed)
  return {
    "step": jnp.asarray(seed, jnp.int32),
    "params": {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)},
  }


class CheckpointerTest(absltest.TestCase):
  def setUp(self):
    super().setUp()
    tmp = tempfile.TemporaryDirectory()
    self.addCleanup(tmp.cleanup)
    self.dir = pathlib.Path(tmp.name) / "ckpt"

  def test_round_trip_keeps_values_and_sharding(self):
    ckpt = checkpointing.Checkpointer(str(self.dir), every_steps=1, keep=2)
    saved = make_state(7)
    self.assertTrue(ckpt.save(7, saved, SIGNATURE))
    ckpt.wait_until_finished()
    mesh = parallel.create_mesh()
    target = jax.device_put(make_state(0), parallel.replicated(mesh))
    restored = ckpt.restore(7, target, SIGNATURE)
    ckpt.close()
    np.testing.assert_array_equal(restored["params"]["w"], saved["params"]["w"])
    self.assertEqual(int(restored["step"]), 7)
    self.assertEqual(
      restored["params"]["w"].sharding, target["params"]["w"].sharding
    )

  def test_interval_and_latest_n_preservation(self):
    ckpt = checkpointing.Checkpointer(str(self.dir), every_steps=2, keep=2)
    for step in range(1, 8):
      ckpt.save(step, make_state(step), SIGNATURE)
    ckpt.save(7, make_state(7), SIGNATURE, force=True)
    ckpt.close()
    kept = sorted(int(p.name) for p in self.dir.iterdir() if p.name.isdigit())
    self.assertEqual(kept, [6, 7])
    reopened = checkpointing.Checkpointer(str(self.dir), every_steps=2, keep=2)
    self.assertEqual(reopened.latest_step(), 7)
    reopened.close()

  def test_unfinished_save_is_ignored(self):
    ckpt = checkpointing.Checkpointer(str(self.dir), every_steps=1, keep=3)
    ckpt.save(1, make_state(1), SIGNATURE)
    ckpt.close()
    # What a save killed half-way leaves: a temporary folder, never renamed.
    (self.dir / "2.orbax-checkpoint-tmp-123").mkdir()
    reopened = checkpointing.Checkpointer(str(self.dir), every_steps=1, keep=3)
    self.assertEqual(reopened.latest_step(), 1)
    # The leftover does not block saving the same step again, and that save
    # restores to what was written (orbax removes leftovers asynchronously,
    # so their removal is not asserted).
    saved = make_state(2)
    self.assertTrue(reopened.save(2, saved, SIGNATURE))
    reopened.wait_until_finished()
    self.assertEqual(reopened.latest_step(), 2)
    restored = reopened.restore(2, make_state(0), SIGNATURE)
    reopened.close()
    np.testing.assert_array_equal(restored["params"]["w"], saved["params"]["w"])

  def test_signature_mismatch_is_refused(self):
    ckpt = checkpointing.Checkpointer(str(self.dir), every_steps=1, keep=1)
    ckpt.save(1, make_state(1), SIGNATURE)
    ckpt.wait_until_finished()
    other = {**SIGNATURE, "num_proxies": 4}
    with self.assertRaisesRegex(
      checkpointing.IncompatibleCheckpointError,
      r"'num_proxies': \(3, 4\)",
    ):
      ckpt.restore(1, make_state(0), other)
    ckpt.close()


if __name__ == "__main__":
  absltest.main()
