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
"""launch/tpu_vm.py without gcloud: dry runs, bad flags and a fake gcloud.

The expected gcloud invocations are written out by hand, argument by
argument, from the gcloud reference (compute tpus tpu-vm create / ssh / scp /
delete), and compared with the printed commands split by shlex.
"""

import json
import os
import pathlib
import shlex
import subprocess
import sys
import tarfile
import tempfile
from unittest import mock

import setuptools
from absl.testing import absltest, parameterized

from launch import shell

REPO = pathlib.Path(__file__).resolve().parents[1]
TPU = ["gcloud", "compute", "tpus", "tpu-vm"]
WHERE = ["--name=my-tpu", "--zone=us-central2-b"]
ZONE = "--zone=us-central2-b"
RUN = [
  "--config=configs/fashion_mnist.py",
  "--workdir=gs://my-bucket/runs/a",
]
CREATE = ["--accelerator_type=v4-32", "--runtime_version=tpu-ubuntu2204-base"]


def launch(*args: str, env: dict[str, str] | None = None):
  """Runs the tool; by default with no gcloud reachable (PATH emptied)."""
  return subprocess.run(
    [sys.executable, "-m", "launch.tpu_vm", *args],
    cwd=REPO,
    env={**os.environ, "PATH": os.devnull} if env is None else env,
    capture_output=True,
    text=True,
    timeout=60,
  )


def printed(stdout: str) -> list[tuple[str, list[str]]]:
  """(command name, argv) of each printed line."""
  steps, name = [], None
  for line in stdout.splitlines():
    if line.startswith("# "):
      name = line[2:]
    else:
      steps.append((name, shlex.split(line)))
  return steps


def setup_requirements() -> list[str]:
  """install_requires and the train extra, read by running setup.py with
  setup() captured."""
  with mock.patch.object(setuptools, "setup") as setup:
    code = (REPO / "setup.py").read_text()
    exec(compile(code, "setup.py", "exec"), {"__name__": "__main__"})  # noqa: S102
  kwargs = setup.call_args.kwargs
  return kwargs["install_requires"] + kwargs["extras_require"]["train"]


class DryRunTest(parameterized.TestCase):
  def dry_run(self, *args: str) -> list[tuple[str, list[str]]]:
    result = launch("--dry_run", *args)
    self.assertEqual(result.returncode, 0, result.stderr)
    return printed(result.stdout)

  @parameterized.named_parameters(
    ("on_demand", [], []),
    ("spot", ["--spot"], ["--spot"]),
    ("preemptible", ["--preemptible"], ["--preemptible"]),
  )
  def test_create(self, extra, expected_extra):
    steps = self.dry_run("create", *WHERE, *CREATE, *extra)
    expected = [
      *TPU,
      "create",
      "my-tpu",
      ZONE,
      "--accelerator-type=v4-32",
      "--version=tpu-ubuntu2204-base",
      *expected_extra,
    ]
    self.assertEqual(steps, [("create", expected)])

  def test_project_goes_to_every_command(self):
    steps = self.dry_run("create", "delete", *WHERE, *CREATE, "--project=p1")
    for _, argv in steps:
      self.assertEqual(argv[argv.index(ZONE) + 1], "--project=p1")

  def test_install(self):
    [(name, argv)] = self.dry_run("install", *WHERE)
    self.assertEqual(name, "install")
    self.assertEqual(argv[:8], [*TPU, "ssh", "my-tpu", ZONE, "--worker=all"])
    self.assertLen(argv, 9)
    self.assertStartsWith(argv[8], "--command=")
    parts = [shlex.split(p) for p in argv[8][10:].split(" && ")]
    venv = "~/proxy_nca_jax_venv"
    self.assertEqual(parts[0], ["sudo", "apt-get", "update", "-q"])
    self.assertEqual(
      parts[1],
      [
        "sudo",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "install",
        "-y",
        "-q",
        "python3.11",
        "python3.11-venv",
      ],
    )
    self.assertEqual(parts[2], ["python3.11", "-m", "venv", venv])
    self.assertEqual(
      parts[3], [f"{venv}/bin/pip", "install", "-q", "--upgrade", "pip"]
    )
    self.assertEqual(parts[4][:3], [f"{venv}/bin/pip", "install", "-q"])
    self.assertLen(parts, 5)
    # setup.py's requirements, jax with its TPU extra (libtpu).
    wanted = setup_requirements()
    jax = [r for r in wanted if r.startswith("jax>")]
    self.assertLen(jax, 1)
    installed = parts[4][3:]
    self.assertIn("jax[tpu]" + jax[0][3:], installed)
    self.assertCountEqual(
      [r for r in installed if not r.startswith("jax[tpu]")],
      [r for r in wanted if r not in jax],
    )

  def test_install_without_apt(self):
    [(_, argv)] = self.dry_run(
      "install", *WHERE, "--apt_packages=", "--python=python3.12"
    )
    self.assertStartsWith(
      argv[8], "--command=python3.12 -m venv ~/proxy_nca_jax_venv && "
    )

  def test_copy(self):
    with tempfile.TemporaryDirectory() as tmp:
      env = {**os.environ, "TMPDIR": tmp}
      result = launch("copy", *WHERE, "--dry_run", env=env)
      self.assertEqual(result.returncode, 0, result.stderr)
      archive = os.path.join(tmp, "proxy_nca_jax-my-tpu.tar.gz")
      self.assertFalse(os.path.exists(archive))  # Printed, not run.
    tar, scp, unpack = printed(result.stdout)
    self.assertEqual(
      tar[1],
      [
        "tar",
        "-czf",
        archive,
        "--exclude=.git",
        "--exclude=.venv",
        "--exclude=__pycache__",
        "--exclude=workdirs",
        "--exclude=*.egg-info",
        "-C",
        str(REPO),
        ".",
      ],
    )
    self.assertEqual(
      scp[1],
      [
        *TPU,
        "scp",
        archive,
        "my-tpu:proxy_nca_jax.tar.gz",
        ZONE,
        "--worker=all",
      ],
    )
    self.assertEqual(
      unpack[1],
      [
        *TPU,
        "ssh",
        "my-tpu",
        ZONE,
        "--worker=all",
        "--command=rm -rf ~/proxy_nca_jax && mkdir -p ~/proxy_nca_jax && "
        "tar -xzf ~/proxy_nca_jax.tar.gz -C ~/proxy_nca_jax",
      ],
    )
    self.assertEqual({name for name, _ in (tar, scp, unpack)}, {"copy"})

  @parameterized.named_parameters(
    ("default_data_dir", [], ["--config.input.data_dir=gs://my-bucket/tfds"]),
    (
      "own_data_dir",
      ["--data_dir=gs://d/x"],
      ["--config.input.data_dir=gs://d/x"],
    ),
    ("config_data_dir", ["--data_dir="], []),
  )
  def test_run(self, extra, data_flags):
    data_flags = [
      f.replace("gs://my-bucket/tfds", "gs://my-bucket/tensorflow_datasets")
      for f in data_flags
    ]
    [(name, argv)] = self.dry_run(
      "run", *WHERE, *RUN, *extra, "--", "--config.loss.scale=8"
    )
    self.assertEqual(name, "run")
    self.assertEqual(argv[:8], [*TPU, "ssh", "my-tpu", ZONE, "--worker=all"])
    self.assertLen(argv, 9)
    self.assertStartsWith(argv[8], "--command=")
    # No distributed flags: JAX detects the TPU workers itself.
    self.assertEqual(
      shlex.split(argv[8][10:]),
      [
        "cd",
        "~/proxy_nca_jax",
        "&&",
        "nohup",
        "~/proxy_nca_jax_venv/bin/python",
        "-m",
        "proxy_nca_jax.train",
        "--config=configs/fashion_mnist.py",
        "--workdir=gs://my-bucket/runs/a",
        *data_flags,
        "--config.loss.scale=8",
        ">",
        "~/proxy_nca_jax_train.log",
        "2>&1",
        "<",
        "/dev/null",
        "&",
      ],
    )

  def test_run_quotes_values_for_the_remote_shell(self):
    [(_, argv)] = self.dry_run(
      "run", *WHERE, *RUN, "--", "--config.input.test_classes=(5, 6)"
    )
    self.assertIn("--config.input.test_classes=(5, 6)", shlex.split(argv[8]))

  @parameterized.named_parameters(
    ("worker_0_followed", [], "--worker=0", "tail -n 100 -F"),
    (
      "chosen_worker",
      ["--worker=3", "--nofollow", "--lines=20"],
      "--worker=3",
      "tail -n 20",
    ),
  )
  def test_logs(self, extra, worker, tail):
    [(_, argv)] = self.dry_run("logs", *WHERE, *extra)
    self.assertEqual(
      argv,
      [
        *TPU,
        "ssh",
        "my-tpu",
        ZONE,
        worker,
        f"--command={tail} ~/proxy_nca_jax_train.log",
      ],
    )

  @parameterized.named_parameters(
    ("asks_first", [], []), ("no_prompt", ["--yes"], ["--quiet"])
  )
  def test_delete(self, extra, expected_extra):
    steps = self.dry_run("delete", *WHERE, *extra)
    expected = [*TPU, "delete", "my-tpu", ZONE, *expected_extra]
    self.assertEqual(steps, [("delete", expected)])

  def test_full_workflow_in_order(self):
    commands = ["create", "install", "copy", "run", "logs", "delete"]
    steps = self.dry_run(*commands, *WHERE, *CREATE, *RUN)
    names = [name for name, _ in steps]
    self.assertEqual(list(dict.fromkeys(names)), commands)
    self.assertEqual(names, sorted(names, key=commands.index))
    verbs = [argv[4] if argv[0] == "gcloud" else argv[0] for _, argv in steps]
    self.assertEqual(
      verbs, ["create", "ssh", "tar", "scp", "ssh", "ssh", "ssh", "delete"]
    )


class ShellLineTest(parameterized.TestCase):
  @parameterized.parameters(
    (["a", "b c", "--x=(5, 6)", "--c=cd ~/x && ls > y &"],),
    (["--k=it's $HOME", 'say "hi"', "back`tick`", "a\\b", "bang!", ""],),
  )
  def test_shell_gives_the_arguments_back(self, argv):
    line = shell.shell_line(argv)
    self.assertEqual(shlex.split(line), argv)
    result = subprocess.run(
      ["bash", "-c", f"printf '%s\\0' {line}"],
      capture_output=True,
      check=True,
    )
    self.assertEqual(result.stdout.decode().split("\0")[:-1], argv)


class BadFlagsTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("no_command", [*WHERE], "name at least one command"),
    ("unknown_command", ["crate", *WHERE], "unknown command 'crate'"),
    ("no_zone", ["delete", "--name=my-tpu"], "delete needs --zone"),
    ("create_without_type", ["create", *WHERE], "--accelerator_type"),
    (
      "spot_and_preemptible",
      ["create", *WHERE, *CREATE, "--spot", "--preemptible"],
      "exclude each other",
    ),
    (
      "local_workdir",
      ["run", *WHERE, RUN[0], "--workdir=/tmp/run"],
      "not a gs:// URL",
    ),
    (
      "missing_config_file",
      ["run", *WHERE, "--config=configs/nope.py", RUN[1]],
      "no configs/nope.py in",
    ),
    ("bad_name", ["delete", "--name=My_TPU", ZONE], "lowercase letters"),
    ("bad_worker", ["logs", *WHERE, "--worker=first"], "a worker index"),
    (
      "train_flags_without_run",
      ["logs", *WHERE, "--", "--config.seed=1"],
      "flags after -- need run",
    ),
    ("misspelled_flag", ["create", *WHERE, "--acelerator_type=v4-8"], "acel"),
    ("not_a_number", ["logs", *WHERE, "--lines=many"], "--lines"),
    (
      "launcher_flag_after_the_separator",
      ["delete", *WHERE, "--", "--dry_run"],
      "--dry_run after -- would go to the training",
    ),
  )
  def test_one_clear_line_and_nothing_run(self, args, message):
    result = launch("--dry_run", *args)
    self.assertEqual(result.returncode, 2, result.stderr)
    self.assertEqual(result.stdout, "")
    self.assertStartsWith(result.stderr, "error: ")
    self.assertIn(message, result.stderr)
    self.assertNotIn("Traceback", result.stderr)

  def test_without_gcloud_only_dry_run_works(self):
    env = {**os.environ, "PATH": "/nonexistent"}
    result = launch("delete", *WHERE, env=env)
    self.assertEqual(result.returncode, 2)
    self.assertIn("gcloud is not on PATH", result.stderr)
    self.assertIn("--dry_run", result.stderr)
    self.assertEqual(
      launch("delete", *WHERE, "--dry_run", env=env).returncode, 0
    )


FAKE_GCLOUD = """#!{python}
import json, os, sys
with open(os.environ["FAKE_GCLOUD_LOG"], "a") as f:
  f.write(json.dumps(sys.argv[1:]) + "\\n")
sys.exit(int(os.environ.get("FAKE_GCLOUD_STATUS", "0")))
"""


class FakeGcloudTest(absltest.TestCase):
  """Without --dry_run, the printed commands are the ones executed."""

  def setUp(self):
    super().setUp()
    tmp = tempfile.TemporaryDirectory()
    self.addCleanup(tmp.cleanup)
    self.root = pathlib.Path(tmp.name)
    bin_dir = self.root / "bin"
    bin_dir.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD.format(python=sys.executable))
    gcloud.chmod(0o755)
    self.log = self.root / "gcloud.jsonl"
    self.env = {
      **os.environ,
      "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
      "FAKE_GCLOUD_LOG": str(self.log),
      "TMPDIR": str(self.root),
    }
    self.source = self.root / "checkout"
    for name in (
      "proxy_nca_jax/__init__.py",
      "configs/c.py",
      ".venv/bin/python",
      ".git/HEAD",
      "workdirs/run/metrics.jsonl",
    ):
      (self.source / name).parent.mkdir(parents=True, exist_ok=True)
      (self.source / name).write_text("x")
    self.args = [
      "copy",
      "run",
      "delete",
      *WHERE,
      f"--source_dir={self.source}",
      "--config=configs/c.py",
      RUN[1],
      "--yes",
    ]

  def calls(self) -> list[list[str]]:
    if not self.log.exists():
      return []
    return [json.loads(line) for line in self.log.read_text().splitlines()]

  def test_runs_what_the_dry_run_prints(self):
    dry = launch(*self.args, "--dry_run", env=self.env)
    self.assertEqual(dry.returncode, 0, dry.stderr)
    self.assertEqual(self.calls(), [])
    real = launch(*self.args, env=self.env)
    self.assertEqual(real.returncode, 0, real.stderr)
    self.assertEqual(real.stdout, dry.stdout)
    gcloud = [argv for _, argv in printed(dry.stdout) if argv[0] == "gcloud"]
    self.assertEqual(self.calls(), [argv[1:] for argv in gcloud])
    archive = self.root / "proxy_nca_jax-my-tpu.tar.gz"
    with tarfile.open(archive) as tar:
      names = {n.removeprefix("./") for n in tar.getnames()}
    self.assertIn("proxy_nca_jax/__init__.py", names)
    self.assertIn("configs/c.py", names)
    for left_out in (".venv", ".git", "workdirs"):
      self.assertFalse([n for n in names if n.startswith(left_out)], names)

  def test_stops_at_the_first_failure(self):
    env = {**self.env, "FAKE_GCLOUD_STATUS": "3"}
    result = launch(*self.args, env=env)
    self.assertEqual(result.returncode, 3)
    self.assertIn("error: copy failed (exit 3)", result.stderr)
    self.assertLen(self.calls(), 1)  # The scp; nothing after it.
    self.assertEqual(self.calls()[0][3], "scp")


if __name__ == "__main__":
  absltest.main()
