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
"""When a run calls jax.distributed.initialize, decided without a cluster.

The environments are dictionaries written by hand; JAX's own cluster
detection (a private module, used here only as the reference the rule must
agree with) reads the same dictionaries.
"""

import os
import pathlib
import sys
import tempfile
from unittest import mock

import pytest
from absl.testing import absltest, parameterized
from jax._src import clusters

from proxy_nca_jax.training import distributed
from tests.testing import tiny_run

SLURM_2 = {
  "SLURM_JOB_ID": "4242",
  "SLURM_STEP_NODELIST": "node[1-2]",
  "SLURM_NTASKS": "2",
  "SLURM_PROCID": "1",
  "SLURM_LOCALID": "0",
}
SLURM_1 = {**SLURM_2, "SLURM_STEP_NODELIST": "node1", "SLURM_NTASKS": "1"}
OMPI_4 = {
  "OMPI_MCA_orte_hnp_uri": "1531576320.0;tcp://10.96.0.1,10.148.0.1:34911",
  "OMPI_COMM_WORLD_SIZE": "4",
  "OMPI_COMM_WORLD_RANK": "2",
  "OMPI_COMM_WORLD_LOCAL_RANK": "0",
}
OMPI_1 = {**OMPI_4, "OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_RANK": "0"}
GKE_WITHOUT_TPU = {"TPU_WORKER_HOSTNAMES": "w0,w1", "TPU_WORKER_ID": "0"}


def jax_detected_processes(environ: dict[str, str]) -> int | None:
  """How many processes JAX's own detection finds in ``environ``."""
  with mock.patch.dict(os.environ, environ, clear=True):
    _, num_processes, _, _ = (
      clusters.ClusterEnv.auto_detect_unset_distributed_params(
        None, None, None, None, None, 10
      )
    )
  return num_processes


class PlanTest(parameterized.TestCase):
  def test_nothing_set_is_one_process(self):
    plan = distributed.plan(None, None, None, environ={}, tpu_host=False)
    self.assertFalse(plan.initialize)

  def test_explicit_flags_are_passed_on(self):
    plan = distributed.plan(
      "10.0.0.1:1234", 2, 1, environ=SLURM_2, tpu_host=True
    )
    self.assertTrue(plan.initialize)
    self.assertEqual(
      plan.kwargs,
      {
        "coordinator_address": "10.0.0.1:1234",
        "num_processes": 2,
        "process_id": 1,
      },
    )

  def test_tpu_vm_initializes_with_no_arguments(self):
    plan = distributed.plan(None, None, None, environ={}, tpu_host=True)
    self.assertTrue(plan.initialize)
    self.assertEqual(plan.kwargs, {})

  @parameterized.named_parameters(
    ("slurm_two_tasks", SLURM_2, True),
    ("slurm_one_task", SLURM_1, False),
    ("open_mpi_four", OMPI_4, True),
    ("open_mpi_one", OMPI_1, False),
    ("gke_variables_on_a_machine_without_tpu", GKE_WITHOUT_TPU, False),
  )
  def test_environment_agrees_with_jax_detection(self, environ, expected):
    plan = distributed.plan(None, None, None, environ=environ, tpu_host=False)
    self.assertEqual(plan.initialize, expected)
    self.assertEqual(plan.kwargs, {})
    # Where the rule initialises, JAX must find the layout by itself (with
    # more than one process); where JAX finds none, the rule must not call.
    detected = jax_detected_processes(environ)
    if expected:
      self.assertGreater(detected, 1)
    else:
      self.assertIn(detected, (None, 1))

  @parameterized.named_parameters(
    ("only_num_processes", None, 2, None, "--coordinator_address, "),
    ("no_process_id", "h:1", 2, None, "--process_id missing"),
    ("no_port", "10.0.0.1", 2, 0, "is not HOST:PORT"),
    ("id_too_large", "h:1", 2, 2, "numbered 0 to num_processes - 1"),
    ("negative_id", "h:1", 2, -1, "numbered 0 to num_processes - 1"),
  )
  def test_bad_flags_say_what_to_pass(
    self, coordinator, num_processes, process_id, message
  ):
    with self.assertRaisesRegex(ValueError, message):
      distributed.plan(
        coordinator, num_processes, process_id, environ={}, tpu_host=False
      )


class TpuHostTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("v4_accel_nodes", ["accel0", "accel1"], True, True),
    ("v5e_vfio_node", ["vfio/0", "vfio/vfio"], True, True),
    ("vfio_control_node_only", ["vfio/vfio"], True, False),
    ("device_but_no_libtpu", ["accel0"], False, False),
    ("libtpu_but_no_device", ["null"], True, False),
  )
  def test_device_nodes_and_libtpu(self, nodes, has_libtpu, expected):
    with tempfile.TemporaryDirectory() as tmp:
      for node in nodes:
        path = pathlib.Path(tmp, node)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
      self.assertEqual(
        distributed.is_tpu_host(tmp, has_libtpu=has_libtpu), expected
      )


@pytest.mark.slow
class TrainCommandTest(absltest.TestCase):
  def test_incomplete_flags_stop_before_writing_anything(self):
    with tempfile.TemporaryDirectory() as tmp:
      workdir = pathlib.Path(tmp, "run")
      result = tiny_run.run_command(
        [
          sys.executable,
          "-m",
          "proxy_nca_jax.train",
          "--config=configs/fashion_mnist.py",
          f"--workdir={workdir}",
          "--num_processes=2",
        ]
      )
      self.assertEqual(result.returncode, 2, result.stderr[-2000:])
      self.assertRegex(
        result.stderr, r"error: --coordinator_address, --process_id missing"
      )
      self.assertNotIn("Traceback", result.stderr)
      self.assertFalse(workdir.exists())


if __name__ == "__main__":
  absltest.main()
