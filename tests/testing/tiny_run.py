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
"""A tiny training run over generated data, for tests in and out of process.

``TINY_OVERRIDES`` is applied both to a ConfigDict (in-process tests) and as
``--config.key=value`` flags (tests that run the command line), so the two
kinds of test train the same model on the same data.
"""

import atexit
import functools
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import jax
import ml_collections
from absl.testing import parameterized

from configs import fashion_mnist
from proxy_nca_jax import checkpointing, parallel
from proxy_nca_jax.data import pipeline
from proxy_nca_jax.inference import embedding, split_embedding
from proxy_nca_jax.training import setup, train_state, trainer, workdirs
from tests.testing import fake_fashion_mnist

REPO = pathlib.Path(__file__).resolve().parents[2]
PER_CLASS = {"train": 12, "test": 4}  # 160 images of 10 classes.
NUM_PROXIES = 5
TINY_OVERRIDES = {
  "input.batch_size": 16,
  "input.eval_batch_size": 32,
  "input.shuffle_buffer": 128,
  "model.widths": (4, 8, 8),
  "model.embedding_dim": 8,
  "schedule.num_steps": 6,
  "evals.every_steps": 0,
  "evals.at_step_zero": False,
  "evals.kmeans_restarts": 1,
  "evals.kmeans_iters": 5,
  "ckpt.every_steps": 3,
  "log_every_steps": 2,
  "report.at_end": False,  # The tests of the end-of-run files turn it on.
}
# What each evaluation of the tiny run logs (its config's Recall@K included).
EVAL_METRICS = (
  "recall@1",
  "recall@2",
  "recall@4",
  "recall@8",
  "precision@1",
  "r_precision",
  "map@r",
  "nmi",
  "ami",
)


def write_data(root: pathlib.Path) -> None:
  """Writes the generated IDX files under ``root/idx``."""
  fake_fashion_mnist.write_fake_fashion_mnist(root / "idx", per_class=PER_CLASS)


def data_overrides(root: pathlib.Path) -> dict[str, str]:
  return {
    "input.data_dir": str(root / "tfds"),
    "input.manual_dir": str(root / "idx"),
  }


def tiny_config(root: pathlib.Path, **changes) -> ml_collections.ConfigDict:
  """The FMNIST-ZS config, made tiny; ``changes`` use '__' for '.'."""
  config = fashion_mnist.get_config()
  overrides = {**TINY_OVERRIDES, **data_overrides(root)}
  overrides.update({k.replace("__", "."): v for k, v in changes.items()})
  with config.unlocked():
    for key, value in overrides.items():
      section, _, field = key.rpartition(".")
      setattr(config[section] if section else config, field, value)
  return config


def train_command(root: pathlib.Path, workdir: pathlib.Path, **changes):
  """argv of ``python -m proxy_nca_jax.train`` for the tiny run."""
  overrides = {**TINY_OVERRIDES, **data_overrides(root)}
  overrides.update({k.replace("__", "."): v for k, v in changes.items()})
  flags = [
    f"--config.{k}={''.join(str(v).split())}" for k, v in overrides.items()
  ]
  return [
    sys.executable,
    "-m",
    "proxy_nca_jax.train",
    "--config=configs/fashion_mnist.py",
    f"--workdir={workdir}",
    *flags,
  ]


def subprocess_env(
  num_devices: int | None = None, xla_flags: tuple[str, ...] = ()
) -> dict[str, str]:
  """The environment of a command run on CPU (with ``num_devices`` fake
  devices when given, as the in-process tests' conftest has 8, and
  ``xla_flags`` added to XLA_FLAGS)."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  if num_devices is not None:
    xla_flags = (
      f"--xla_force_host_platform_device_count={num_devices}",
      *xla_flags,
    )
  if xla_flags:
    env["XLA_FLAGS"] = " ".join((env.get("XLA_FLAGS", ""), *xla_flags)).strip()
  return env


def run_command(
  argv: list[str],
  num_devices: int | None = None,
  xla_flags: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
  return subprocess.run(
    argv,
    cwd=REPO,
    env=subprocess_env(num_devices, xla_flags),
    capture_output=True,
    text=True,
    timeout=600,
  )


class WrittenDataTest(parameterized.TestCase):
  """A test class whose ``cls.root`` holds the tiny dataset's IDX files,
  written once and not prepared (the first run prepares them, as a user's
  first run does)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._tmp = tempfile.TemporaryDirectory()
    cls.root = pathlib.Path(cls._tmp.name)
    write_data(cls.root)

  @classmethod
  def tearDownClass(cls):
    cls._tmp.cleanup()
    super().tearDownClass()


class PreparedDataTest(WrittenDataTest):
  """A test class whose ``cls.root`` holds the tiny dataset, prepared once."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    pipeline.prepare_dataset(tiny_config(cls.root).input)


def train_steps(config, mesh, num_steps: int, num_proxies: int = NUM_PROXIES):
  """(losses, final state on the host) of ``num_steps`` jitted steps
  (``num_proxies``: K a class for a loss with K centres a class)."""
  parts = setup.assemble(config, mesh, num_proxies)
  state = parts.initial_state()
  step_fn = parts.train_step()
  batches = pipeline.create_train_iterator(config.input, seed=0)
  loss_values = []
  for _ in range(num_steps):
    state, metrics = step_fn(state, parallel.global_batch(next(batches), mesh))
    loss_values.append(float(metrics["loss"]))
  return loss_values, jax.device_get(state)


def initial_state(config, mesh, num_proxies: int = NUM_PROXIES):
  """(model, optimiser, freshly initialised state replicated on ``mesh``)."""
  parts = setup.assemble(config, mesh, num_proxies)
  return parts.model, parts.tx, parts.initial_state()


def latest_state(workdir: pathlib.Path, config):
  """(step, state on the host) of the newest checkpoint in ``workdir``."""
  ckpt = checkpointing.Checkpointer(
    str(workdir / "checkpoints"), every_steps=0, keep=100
  )
  try:
    step = ckpt.latest_step()
    parts = setup.assemble(config, parallel.create_mesh(), NUM_PROXIES)
    target = parts.abstract_state()
    signature = train_state.run_signature(config, NUM_PROXIES)
    return step, jax.device_get(ckpt.restore(step, target, signature))
  finally:
    ckpt.close()


def embed_test_split(
  workdir: pathlib.Path,
  mesh: jax.sharding.Mesh | None = None,
  **options,
) -> split_embedding.EmbeddedSplit:
  """The test split embedded by the run's newest checkpoint along the
  evaluation path (the whole train state restored, the tfds pipeline), a
  reference for what loads the network alone; ``options`` go to
  ``split_embedding.embed_split``."""
  mesh = parallel.create_mesh() if mesh is None else mesh
  config, model, state = workdirs.restore_train_state(str(workdir), mesh)
  return split_embedding.embed_split(
    embedding.make_embed_fn(model, mesh),
    train_state.inference_variables(state),
    config.input,
    "test",
    mesh,
    **options,
  )


@functools.cache
def shared_run() -> tuple[pathlib.Path, ml_collections.ConfigDict, object]:
  """A tiny run trained once per test process, for tests that only read it.

  Evaluated at steps 0, 3 and 6, with the embedding layer's learning rate
  at half the backbone's (so the learning-rate groups differ).

  Returns:
    (its workdir, its config, (step, state on the host) of its checkpoint).
  """
  root = pathlib.Path(tempfile.mkdtemp(prefix="shared_run_"))
  atexit.register(shutil.rmtree, root, ignore_errors=True)
  write_data(root)
  config = tiny_config(
    root,
    evals__at_step_zero=True,
    evals__every_steps=3,
    optimizer__head_lr_mult=0.5,
  )
  workdir = root / "run"
  trainer.train_and_evaluate(config, str(workdir))
  return workdir, config, latest_state(workdir, config)
