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
"""RQ2's slow start: why Proxy-NCA trails the triplet loss early, and fixes.

On GLYPHS-ZS (900 training classes) Proxy-NCA's test MAP@R is far below the
triplet loss's at step 100 and overtakes it only at step 400
(docs/glyphs_rq2). With B = 64 images a step and C = 900 proxies, a static
proxy is the positive of some image in a batch with probability
1 - (1 - 1/C)^B, about 7%: it moves towards its class about once in 14
steps, and until it has, the NCA softmax (the paper's Eq. 8 over all C
proxies) pulls each image towards a proxy that is still where random
initialisation put it. The candidate fixes each attack that: proxies at the
initial network's class means (a start where each proxy already sits among
its class's images), a faster proxy learning rate, a learning-rate warm-up
(the network waits while the proxies move), and the softmax scale (the
gradient's spread over the C proxies).

Every variant is the ``--config`` (configs/glyphs.py) with one change,
trained ``--num_steps`` steps and evaluated on the validation classes every
``--eval_every`` steps: the test classes take no part in the choice.

  python -m research.slow_start --out=docs/glyphs_slow_start \
      --config=configs/glyphs.py --num_steps=400 --eval_every=50 \
      --triplet_samples_per_class=8 --max_eval_examples=10000
"""

from absl import app

from research import common, variants

QUESTION = "slow_start"
DEFAULT_STEPS = 400
DEFAULT_SEEDS = (0,)
# name -> (loss, config changes on top of the --config).
VARIANTS = {
  "proxy_nca": ("proxy_nca", {}),
  "class_means_init": ("proxy_nca", {"proxies.init": "class_means"}),
  "proxy_lr_x300": ("proxy_nca", {"optimizer.proxy_lr_mult": 300.0}),
  "proxy_lr_x1000": ("proxy_nca", {"optimizer.proxy_lr_mult": 1000.0}),
  "warmup_100": ("proxy_nca", {"schedule.warmup_steps": 100}),
  "scale_16": ("proxy_nca", {"loss.scale": 16.0}),
  "scale_4": ("proxy_nca", {"loss.scale": 4.0}),
  "triplet_semihard": ("triplet_semihard", {}),
}


def positive_probability(num_proxies: int, batch_size: int) -> float:
  """Chance that one static proxy is some image's positive in a batch of
  uniformly drawn classes."""
  return 1.0 - (1.0 - 1.0 / num_proxies) ** batch_size


def main(argv: list[str]) -> None:
  del argv
  session = common.Session()
  steps = common.num_steps(DEFAULT_STEPS)
  runs, config = variants.train_variants(
    QUESTION, VARIANTS, variants.NAMES.value, steps, common.seeds(DEFAULT_SEEDS)
  )
  num_proxies = len(config.input.train_classes) - len(config.input.val_classes)
  chance = positive_probability(num_proxies, config.input.batch_size)
  seeds = ", ".join(map(str, common.seeds(DEFAULT_SEEDS)))
  what = (
    f"Each variant trained {steps} steps (seeds {seeds}) and was evaluated "
    f"on the {len(config.input.val_classes)} validation classes every "
    f"{common.EVAL_EVERY.value} steps; MAP@R mean (± std over seeds when "
    f"more than one). {common.describe_eval()} With {num_proxies} proxies "
    f"and batches of {config.input.batch_size}, a static proxy is a "
    f"positive in a given step with probability {chance:.3f} (once in "
    f"{1 / chance:.1f} steps). "
    "Training seconds exclude evaluation and are wall-clock on a shared "
    "machine."
  )
  variants.write_study(
    runs,
    VARIANTS,
    title=(
      f"RQ2's slow start on {common.dataset_title()}: Proxy-NCA's first steps"
    ),
    what=what,
    figure="slow_start.png",
    figure_title=f"{common.dataset_title()}: the first steps of Proxy-NCA",
    session=session,
  )


if __name__ == "__main__":
  app.run(main)
