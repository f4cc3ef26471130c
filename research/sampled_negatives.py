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
"""What sampled negative proxies cost in quality (issue 16, Partial FC).

Proxy-NCA with each step's denominator over the batch's positive proxies
and a random fraction of the others (``loss.negative_fraction``,
losses/sampled_proxies.py), against every proxy, on the validation classes
of ``--config`` (configs/glyphs.py: 900 training classes, batches of 64, so
a fraction 0.1 compares with 90 proxies a step and 0.3 with 270). What it
saves in time and memory at a million proxies is measured by
benchmarks/proxy_step_floor.py.

  python -m research.sampled_negatives --out=docs/glyphs_sampled_negatives \
      --config=configs/glyphs.py --num_steps=400 --eval_every=100 \
      --seeds=0,1,2 --max_eval_examples=10000
"""

from absl import app

from research import common, variants

QUESTION = "sampled_negatives"
DEFAULT_STEPS = 400
DEFAULT_SEEDS = (0, 1, 2)
VARIANTS = {
  f"fraction_{fraction}": ("proxy_nca", {"loss.negative_fraction": fraction})
  for fraction in (1.0, 0.3, 0.1)
}


def main(argv: list[str]) -> None:
  del argv
  session = common.Session()
  steps = common.num_steps(DEFAULT_STEPS)
  seeds = common.seeds(DEFAULT_SEEDS)
  runs, config = variants.train_variants(
    QUESTION, VARIANTS, variants.NAMES.value, steps, seeds
  )
  num_proxies = len(config.input.train_classes) - len(config.input.val_classes)
  what = (
    f"Proxy-NCA ({num_proxies} proxies, batches of "
    f"{config.input.batch_size}) with each step's denominator over the "
    "batch's positives and the given fraction of the other proxies, drawn "
    f"from the seed and the step; {steps} steps, seeds "
    f"{', '.join(map(str, seeds))}, evaluated on the "
    f"{len(config.input.val_classes)} validation classes every "
    f"{common.EVAL_EVERY.value} steps; MAP@R mean ± std over seeds. "
    f"{common.describe_eval()} Training seconds exclude evaluation and are "
    "wall-clock on a shared 2-core machine (the loss is a small part of a "
    "step at 900 proxies, so they measure little)."
  )
  variants.write_study(
    runs,
    VARIANTS,
    title=f"Sampled negative proxies on {common.dataset_title()}",
    what=what,
    figure="sampled_negatives.png",
    figure_title=(
      f"{common.dataset_title()}: Proxy-NCA with sampled negative proxies"
    ),
    session=session,
  )


if __name__ == "__main__":
  app.run(main)
