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
r"""A Cloud TPU VM (or pod slice) for proxy_nca_jax, through gcloud.

  python -m launch.tpu_vm COMMAND [COMMAND ...] --name=NAME --zone=ZONE \
      [flags] [--dry_run] [-- TRAIN_FLAGS]

Commands, run in the order given:

  create   gcloud compute tpus tpu-vm create (--accelerator_type,
           --runtime_version, optionally --spot or --preemptible)
  install  on every worker: a virtual environment with jax[tpu] and the
           package's requirements (read from setup.py)
  copy     this checkout (tar, without .git, .venv, workdirs) to every worker
  run      `python -m proxy_nca_jax.train --config=... --workdir=gs://...` on
           every worker, in the background (nohup, a log file per worker);
           JAX detects the workers itself (training/distributed.py).
           TRAIN_FLAGS after `--` are added, e.g. --config.loss.scale=8
  logs     follow the log of --worker (default 0)
  delete   gcloud compute tpus tpu-vm delete

--dry_run prints the commands (gcloud and the local tar) without running
anything. See launch/README.md for a worked example.
"""

import ast
import dataclasses
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

from absl import app, flags

from launch import shell

REPO = pathlib.Path(__file__).resolve().parents[1]
COMMANDS = ("create", "install", "copy", "run", "logs", "delete")
GCLOUD_TPU_VM = ("gcloud", "compute", "tpus", "tpu-vm")
# Left out of the copy: history, local environments and local results.
COPY_EXCLUDES = (".git", ".venv", "__pycache__", "workdirs", "*.egg-info")

_NAME = flags.DEFINE_string("name", None, "TPU VM name.")
_ZONE = flags.DEFINE_string("zone", None, "Zone, e.g. us-central2-b.")
_PROJECT = flags.DEFINE_string(
  "project", None, "Google Cloud project (default: gcloud's)."
)
_DRY_RUN = flags.DEFINE_bool(
  "dry_run", False, "Print the commands instead of running them."
)
_ACCELERATOR_TYPE = flags.DEFINE_string(
  "accelerator_type", None, "create: e.g. v4-32, v5litepod-16."
)
_RUNTIME_VERSION = flags.DEFINE_string(
  "runtime_version",
  None,
  "create: TPU software version, e.g. tpu-ubuntu2204-base (v4), "
  "v2-alpha-tpuv5-lite (v5e).",
)
_SPOT = flags.DEFINE_bool("spot", False, "create: a Spot TPU (can stop).")
_PREEMPTIBLE = flags.DEFINE_bool(
  "preemptible", False, "create: a preemptible TPU (older Spot)."
)
_PYTHON = flags.DEFINE_string(
  "python",
  "python3.11",
  "install: the workers' Python (3.11 or later) for the environment.",
)
_APT_PACKAGES = flags.DEFINE_string(
  "apt_packages",
  "python3.11 python3.11-venv",
  "install: Debian packages installed first ('' for none); the Ubuntu "
  "22.04 runtime images come with Python 3.10 only.",
)
_VENV = flags.DEFINE_string(
  "venv", "proxy_nca_jax_venv", "install/run: environment folder in ~."
)
_SOURCE_DIR = flags.DEFINE_string(
  "source_dir", str(REPO), "copy: the local checkout to send."
)
_REMOTE_DIR = flags.DEFINE_string(
  "remote_dir", "proxy_nca_jax", "copy/run: code folder in ~ on workers."
)
_CONFIG = flags.DEFINE_string(
  "config", None, "run: config file in the checkout[:variant]."
)
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "run: gs:// folder for checkpoints and metrics."
)
_DATA_DIR = flags.DEFINE_string(
  "data_dir",
  None,
  "run: gs:// folder for the prepared tfds data, shared by the workers "
  "(default: gs://BUCKET/tensorflow_datasets of --workdir; '' to keep the "
  "config's).",
)
_LOG_FILE = flags.DEFINE_string(
  "log_file", "proxy_nca_jax_train.log", "run/logs: log file in ~."
)
_WORKER = flags.DEFINE_string("worker", "0", "logs: a worker index or all.")
_LINES = flags.DEFINE_integer("lines", 100, "logs: lines shown first.")
_FOLLOW = flags.DEFINE_bool("follow", True, "logs: keep following.")
_YES = flags.DEFINE_bool("yes", False, "delete: no confirmation prompt.")

_OWN_FLAGS = {
  flag.name
  for flag in (_NAME, _ZONE, _PROJECT, _DRY_RUN, _ACCELERATOR_TYPE)
  + (_RUNTIME_VERSION, _SPOT, _PREEMPTIBLE, _PYTHON, _APT_PACKAGES, _VENV)
  + (_SOURCE_DIR, _REMOTE_DIR, _CONFIG, _WORKDIR, _DATA_DIR, _LOG_FILE)
  + (_WORKER, _LINES, _FOLLOW, _YES)
}
_TPU_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class UsageError(ValueError):
  """Flags that cannot make a valid gcloud command."""


@dataclasses.dataclass(frozen=True)
class Step:
  """One command of the workflow: its name and the argv lists it runs."""

  name: str
  commands: list[list[str]]


def _location() -> list[str]:
  zone = [f"--zone={_ZONE.value}"]
  return zone + ([f"--project={_PROJECT.value}"] if _PROJECT.value else [])


def _ssh(worker: str, remote_command: str) -> list[str]:
  return [
    *GCLOUD_TPU_VM,
    "ssh",
    _NAME.value,
    *_location(),
    f"--worker={worker}",
    f"--command={remote_command}",
  ]


def _require(names: list[str], command: str) -> None:
  missing = [f"--{n}" for n in names if flags.FLAGS[n].value is None]
  if missing:
    raise UsageError(f"{command} needs {', '.join(missing)}.")


def create_step() -> Step:
  _require(["accelerator_type", "runtime_version"], "create")
  if _SPOT.value and _PREEMPTIBLE.value:
    raise UsageError("--spot and --preemptible exclude each other.")
  argv = [
    *GCLOUD_TPU_VM,
    "create",
    _NAME.value,
    *_location(),
    f"--accelerator-type={_ACCELERATOR_TYPE.value}",
    f"--version={_RUNTIME_VERSION.value}",
  ]
  argv += ["--spot"] if _SPOT.value else []
  argv += ["--preemptible"] if _PREEMPTIBLE.value else []
  return Step("create", [argv])


def requirements(source_dir: pathlib.Path) -> list[str]:
  """What training needs: setup.py's install_requires and its ``train``
  extra, with jax as jax[tpu] (brings libtpu)."""
  tree = ast.parse((source_dir / "setup.py").read_text())
  found = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.keyword) and node.arg in (
      "install_requires",
      "extras_require",
    ):
      found[node.arg] = ast.literal_eval(node.value)
  if "install_requires" not in found or "train" not in found.get(
    "extras_require", {}
  ):
    raise UsageError(
      f"No install_requires or train extra in {source_dir / 'setup.py'}."
    )
  wanted = found["install_requires"] + found["extras_require"]["train"]
  return [re.sub(r"^jax(?=[<>=!~ ]|$)", "jax[tpu]", r) for r in wanted]


def install_step() -> Step:
  venv = f"~/{_VENV.value}"
  steps = []
  if _APT_PACKAGES.value.strip():
    packages = shlex.join(_APT_PACKAGES.value.split())
    steps.append(
      "sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive "
      f"apt-get install -y -q {packages}"
    )
  reqs = " ".join(
    f'"{r}"' for r in requirements(pathlib.Path(_SOURCE_DIR.value))
  )
  steps += [
    f"{shlex.quote(_PYTHON.value)} -m venv {venv}",
    f"{venv}/bin/pip install -q --upgrade pip",
    f"{venv}/bin/pip install -q {reqs}",
  ]
  return Step("install", [_ssh("all", " && ".join(steps))])


def copy_step() -> Step:
  source = pathlib.Path(_SOURCE_DIR.value)
  if not (source / "proxy_nca_jax").is_dir():
    raise UsageError(f"--source_dir={source} holds no proxy_nca_jax package.")
  archive = str(
    pathlib.Path(tempfile.gettempdir(), f"proxy_nca_jax-{_NAME.value}.tar.gz")
  )
  remote = _REMOTE_DIR.value
  tar = ["tar", "-czf", archive]
  tar += [f"--exclude={pattern}" for pattern in COPY_EXCLUDES]
  tar += ["-C", str(source), "."]
  scp = [
    *GCLOUD_TPU_VM,
    "scp",
    archive,
    f"{_NAME.value}:{remote}.tar.gz",
    *_location(),
    "--worker=all",
  ]
  unpack = (
    f"rm -rf ~/{remote} && mkdir -p ~/{remote} && "
    f"tar -xzf ~/{remote}.tar.gz -C ~/{remote}"
  )
  return Step("copy", [tar, scp, _ssh("all", unpack)])


def default_data_dir(workdir: str) -> str:
  """gs://BUCKET/tensorflow_datasets for a workdir gs://BUCKET/..."""
  bucket = workdir.removeprefix("gs://").split("/", 1)[0]
  return f"gs://{bucket}/tensorflow_datasets"


def run_step(train_flags: list[str]) -> Step:
  _require(["config", "workdir"], "run")
  workdir = _WORKDIR.value
  if not re.match(r"^gs://[^/]+", workdir):
    raise UsageError(
      f"--workdir={workdir} is not a gs:// URL: every worker writes the "
      "checkpoints, and a local path would be a different folder on each."
    )
  config_file = _CONFIG.value.split(":", 1)[0]
  if not (pathlib.Path(_SOURCE_DIR.value) / config_file).is_file():
    raise UsageError(
      f"--config={_CONFIG.value}: no {config_file} in {_SOURCE_DIR.value} "
      "(give the path inside the checkout, e.g. configs/fashion_mnist.py)."
    )
  data_dir = (
    default_data_dir(workdir) if _DATA_DIR.value is None else _DATA_DIR.value
  )
  train = [
    "-m",
    "proxy_nca_jax.train",
    f"--config={_CONFIG.value}",
    f"--workdir={workdir}",
  ]
  train += [f"--config.input.data_dir={data_dir}"] if data_dir else []
  train += train_flags
  remote = (
    f"cd ~/{_REMOTE_DIR.value} && nohup ~/{_VENV.value}/bin/python "
    f"{shell.shell_line(train)} > ~/{_LOG_FILE.value} 2>&1 < /dev/null &"
  )
  return Step("run", [_ssh("all", remote)])


def logs_step() -> Step:
  if not re.match(r"^(all|\d+)$", _WORKER.value):
    raise UsageError(f"--worker={_WORKER.value}: a worker index or 'all'.")
  follow = "-F " if _FOLLOW.value else ""
  tail = f"tail -n {_LINES.value} {follow}~/{_LOG_FILE.value}"
  return Step("logs", [_ssh(_WORKER.value, tail)])


def delete_step() -> Step:
  argv = [*GCLOUD_TPU_VM, "delete", _NAME.value, *_location()]
  return Step("delete", [argv + (["--quiet"] if _YES.value else [])])


def _is_own_flag(flag: str) -> bool:
  name = flag.lstrip("-").split("=", 1)[0]
  return name in _OWN_FLAGS or name.removeprefix("no") in _OWN_FLAGS


def plan(commands: list[str], train_flags: list[str]) -> list[Step]:
  """The steps of ``commands``, in order; validates the flags first.

  Raises:
    UsageError: unknown commands, missing or bad flags (the message says
      which and what to pass).
  """
  if not commands:
    raise UsageError(f"name at least one command of {', '.join(COMMANDS)}.")
  unknown = [c for c in commands if c not in COMMANDS]
  if unknown:
    raise UsageError(
      f"unknown command {unknown[0]!r}; commands: {', '.join(COMMANDS)}."
    )
  _require(["name", "zone"], commands[0])
  if not _TPU_NAME.match(_NAME.value):
    raise UsageError(
      f"--name={_NAME.value}: lowercase letters, digits and hyphens, "
      "starting with a letter (at most 63)."
    )
  for flag in (_VENV, _REMOTE_DIR, _LOG_FILE):
    if not _HOME_NAME.match(flag.value):
      raise UsageError(
        f"--{flag.name}={flag.value}: a plain name in the home folder "
        "(letters, digits, '.', '_', '-')."
      )
  ours = [f for f in train_flags if _is_own_flag(f)]
  if ours:
    # E.g. a --dry_run typed after -- would otherwise not apply.
    raise UsageError(
      f"{ours[0]} after -- would go to the training; put it before --."
    )
  if train_flags and "run" not in commands:
    raise UsageError(f"{shlex.join(train_flags)}: flags after -- need run.")
  bad = [f for f in train_flags if not f.startswith("--")]
  if bad:
    raise UsageError(f"{bad[0]!r} after --: train flags start with --.")
  builders = {
    "create": create_step,
    "install": install_step,
    "copy": copy_step,
    "run": lambda: run_step(train_flags),
    "logs": logs_step,
    "delete": delete_step,
  }
  return [builders[command]() for command in commands]


def execute(steps: list[Step], dry_run: bool) -> int:
  """Prints (dry run) or runs the steps; returns the exit status."""
  if not dry_run and shutil.which("gcloud") is None:
    raise UsageError(
      "gcloud is not on PATH: install the Google Cloud CLI "
      "(https://cloud.google.com/sdk/docs/install), or use --dry_run."
    )
  for step in steps:
    sys.stdout.write(f"# {step.name}\n")
    for argv in step.commands:
      sys.stdout.write(f"{shell.shell_line(argv)}\n")
      sys.stdout.flush()
      if dry_run:
        continue
      status = subprocess.run(argv, check=False).returncode
      if status:
        sys.stderr.write(f"error: {step.name} failed (exit {status}).\n")
        return status
  return 0


def main(argv: list[str]) -> None:
  positional = argv[1:]
  commands = [a for a in positional if not a.startswith("-")]
  train_flags = [a for a in positional if a.startswith("-")]
  try:
    steps = plan(commands, train_flags)
    status = execute(steps, _DRY_RUN.value)
  except UsageError as error:
    sys.stderr.write(f"error: {error}\n")
    sys.exit(2)
  except KeyboardInterrupt:
    sys.stderr.write("Interrupted; a job started by run keeps running.\n")
    sys.exit(130)
  sys.exit(status)


def parse_flags(argv: list[str]) -> list[str]:
  """Parses flags; a bad flag is one line on stderr and exit status 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    sys.stderr.write(f"error: {error}\n")
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
