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
"""RQ1, the bound: does the proxy loss bound the loss over the data points?

The paper (Sec. 3.2) argues that when every point lies within epsilon of its
proxy, the Proxy-NCA loss, up to a factor and constants, upper-bounds the
NCA loss over the original points, and the proxy ranking loss the triplet
loss. For our distances (squared Euclidean between unit vectors, the proxy
loss's multiplied by ``scale`` s >= 1) the chain of inequalities is, for an
anchor x of class y, a positive data point y' of its class, the batch's
negatives Z and the C proxies p:

  NCA over points, paper form (Eq. 3 of the paper over data points):
    L_data(x, y', Z) = |x - y'|^2 + log sum_{z in Z} exp(-|x - z|^2)
  Proxy-NCA, paper form (Eq. 4), what the run trains:
    L_proxy(x) = s |x - p_y|^2 + log sum_{c != y} exp(-s |x - p_c|^2)
  Bound (x.y' >= x.p_y - eps_y', the same for each z, Hoelder with
  alpha = 1/s on the sum over proxies, and at most n_max negatives per
  proxy):
    L_data <= alpha L_proxy + (1 - alpha) log(C - 1) + log n_max
              + 2 eps_y' + 2 eps_Z,
  with eps_v = |v - p_{y(v)}| and eps_Z = max_{z in Z} eps_z.

  Triplet (margin M): [|x - y'|^2 - |x - z|^2 + M]_+
    <= [|x - p_y|^2 - |x - p_{y(z)}|^2 + M]_+ + 2 eps_y' + 2 eps_z.

The paper writes the first as alpha L_proxy + (1 - alpha) log|Z| + O(eps);
the log n_max term is the price of several negatives sharing one proxy.
With the eps terms the inequalities always hold (tests/research_test.py
checks them on generated inputs); the question is how much the eps terms
matter, i.e. how often and how tightly the *proxy side alone* (the bound
without the eps slack) bounds the data loss as training brings the proxies
near their points. This command trains the paper's Proxy-NCA (``:paper``
variant) on FMNIST-ZS with a checkpoint every ``--bound_every`` steps, and
at each checkpoint measures both sides on the batch the next step trains
on (its real batch, BatchNorm in training mode, as the loss saw it).

  python -m research.rq1_bound --out=docs/rq1
"""

import os

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from proxy_nca_jax import evaluation, geometry
from proxy_nca_jax import proxies as proxies_lib  # noqa: E402
from proxy_nca_jax.data import pipeline  # noqa: E402
from research import common  # noqa: E402

BOUND_EVERY = flags.DEFINE_integer(
  "bound_every", 20, "Measure the bound every this many training steps."
)

QUESTION = "rq1"
DEFAULT_STEPS = 300
DEFAULT_SEEDS = (0,)


def bound_terms(
  embeddings: jax.Array,
  labels: jax.Array,
  proxies: jax.Array,
  *,
  scale: float,
  margin: float,
) -> dict[str, jax.Array]:
  """Both sides of the NCA and triplet bounds on one batch (module doc).

  Args:
    embeddings: float (B, D); normalised here.
    labels: int (B,) in [0, C), the row of each sample's proxy.
    proxies: float (C, D), C >= 2; normalised here.
    scale: s >= 1, the proxy loss's multiplier of squared distances.
    margin: M of the triplet losses.

  Returns:
    'pair_mask' bool (B, B): (anchor i, positive j) pairs whose anchor has a
      negative; 'nca_data', 'nca_proxy_side', 'nca_bound' float (B, B): the
      data loss, the proxy side alone (alpha L_proxy + (1 - alpha)
      log(C - 1) + log n_max) and the bound with the eps slack;
    'triplet_mask' bool (B, B, B): (i, j, k) triplets; 'triplet_data',
      'triplet_proxy', 'triplet_bound' float (B, B, B);
    'proxy_nca' float (B,): L_proxy of each anchor; 'eps' float (B,):
      |x_i - p_{y_i}|.

  Raises:
    ValueError: scale < 1 (the Hoelder step needs alpha <= 1) or C < 2.
  """
  num_proxies = proxies.shape[0]
  if scale < 1 or num_proxies < 2:
    raise ValueError(
      f"The bound needs scale >= 1 and two proxies, got {scale=} and "
      f"{num_proxies} proxies."
    )
  x = geometry.l2_normalize(embeddings.astype(jnp.float32))
  p = geometry.l2_normalize(proxies.astype(jnp.float32))
  d_xx = geometry.squared_distances(x, x)
  d_xp = geometry.squared_distances(x, p)
  same = labels[:, None] == labels[None, :]
  positive = same & ~jnp.eye(labels.shape[0], dtype=bool)
  negative = ~same
  own = proxies_lib.static_assignment(labels, num_proxies)

  d_own = jnp.sum(jnp.where(own, d_xp, 0.0), axis=1)
  eps = geometry.euclidean_from_squared(d_own)
  eps_negatives = jnp.max(jnp.where(negative, eps[None, :], 0.0), axis=1)
  has_negative = jnp.any(negative, axis=1)

  nca_data = d_xx + geometry.masked_logsumexp(-d_xx, negative, axis=1)[:, None]
  proxy_nca = scale * d_own + geometry.masked_logsumexp(
    -scale * d_xp, ~own, axis=1
  )
  counts = jnp.sum(own, axis=0)  # Samples of each class in the batch.
  n_max = jnp.max(jnp.where(own, 0, counts[None, :]), axis=1)
  alpha = 1.0 / scale
  proxy_side = (
    alpha * proxy_nca
    + (1.0 - alpha) * jnp.log(num_proxies - 1.0)
    + jnp.log(jnp.maximum(n_max, 1))
  )
  nca_proxy_side = jnp.broadcast_to(proxy_side[:, None], d_xx.shape)
  nca_bound = nca_proxy_side + 2.0 * eps[None, :] + 2.0 * eps_negatives[:, None]

  d_proxy_of = jnp.take(d_xp, labels, axis=1)  # (i, k): |x_i - p_{y_k}|^2.
  triplet_data = jax.nn.relu(d_xx[:, :, None] - d_xx[:, None, :] + margin)
  triplet_proxy = jax.nn.relu(d_own[:, None] - d_proxy_of + margin)
  triplet_proxy = jnp.broadcast_to(
    triplet_proxy[:, None, :], triplet_data.shape
  )
  triplet_bound = (
    triplet_proxy + 2.0 * eps[None, :, None] + 2.0 * eps[None, None, :]
  )
  return {
    "pair_mask": positive & has_negative[:, None],
    "nca_data": nca_data,
    "nca_proxy_side": nca_proxy_side,
    "nca_bound": nca_bound,
    "triplet_mask": positive[:, :, None] & negative[:, None, :],
    "triplet_data": triplet_data,
    "triplet_proxy": triplet_proxy,
    "triplet_bound": triplet_bound,
    "proxy_nca": proxy_nca,
    "eps": eps,
  }


def summarize_terms(terms: dict[str, jax.Array]) -> dict[str, float]:
  """Means over the valid pairs / triplets and how often each side bounds."""
  terms = {k: np.asarray(v, np.float64) for k, v in terms.items()}
  pairs, triplets = terms["pair_mask"] > 0, terms["triplet_mask"] > 0
  data, side = terms["nca_data"][pairs], terms["nca_proxy_side"][pairs]
  bound = terms["nca_bound"][pairs]
  t_data, t_proxy = (
    terms["triplet_data"][triplets],
    terms["triplet_proxy"][triplets],
  )
  t_bound = terms["triplet_bound"][triplets]
  return {
    "eps_mean": terms["eps"].mean(),
    "eps_max": terms["eps"].max(),
    "proxy_nca": terms["proxy_nca"].mean(),
    "nca_data": data.mean(),
    "nca_proxy_side": side.mean(),
    "nca_bound": bound.mean(),
    "nca_bounded_by_proxy_side": np.mean(data <= side),
    "nca_bounded_with_eps": np.mean(data <= bound),
    "triplet_data": t_data.mean(),
    "triplet_proxy": t_proxy.mean(),
    "triplet_bound": t_bound.mean(),
    "triplet_bounded_by_proxy": np.mean(t_data <= t_proxy),
    "triplet_bounded_with_eps": np.mean(t_data <= t_bound),
  }


def measure_run(workdir: str) -> dict[int, dict[str, float]]:
  """``summarize_terms`` at each checkpoint of a run (and at step 0)."""
  config, model, _ = common.restore(workdir)
  steps = common.checkpoint_steps(workdir)
  terms_fn = jax.jit(
    lambda variables, proxies, images, labels: bound_terms(
      model.apply(variables, images, train=True, mutable=["batch_stats"])[0],
      labels,
      proxies,
      scale=config.loss.scale,
      margin=config.loss.margin,
    )
  )
  results = {}
  for step in [0, *steps]:
    if step == 0:
      _, state = common.initial_state(config)
    else:
      _, _, state = common.restore(workdir, step)
    batch = next(
      pipeline.create_train_iterator(
        config.input, seed=config.seed, start_step=step
      )
    )
    variables = {
      "params": state.params["model"],
      "batch_stats": state.batch_stats,
    }
    terms = terms_fn(
      variables, state.params["proxies"], batch["image"], batch["label"]
    )
    results[step] = summarize_terms(terms)
  return results


def plot(results: dict[int, dict[str, float]], path: str) -> None:
  steps = sorted(results)
  series = {k: [results[s][k] for s in steps] for k in results[steps[0]]}
  fig, axes = plt.subplots(1, 3, figsize=(14, 4))
  ax = axes[0]
  ax.plot(steps, series["nca_data"], "o-", ms=3, label="NCA over points")
  ax.plot(steps, series["nca_proxy_side"], "o-", ms=3, label="proxy side")
  ax.plot(steps, series["nca_bound"], "o--", ms=3, label="proxy side + eps")
  ax.set_title("NCA: mean over (anchor, positive) pairs")
  ax = axes[1]
  ax.plot(steps, series["triplet_data"], "o-", ms=3, label="triplet, points")
  ax.plot(steps, series["triplet_proxy"], "o-", ms=3, label="triplet, proxies")
  ax.plot(steps, series["triplet_bound"], "o--", ms=3, label="proxies + eps")
  ax.set_title("triplet (margin): mean over triplets")
  ax = axes[2]
  ax.plot(steps, series["eps_mean"], "o-", ms=3, label="mean |x - p(x)|")
  ax.plot(
    steps,
    series["nca_bounded_by_proxy_side"],
    "s-",
    ms=3,
    label="NCA pairs bounded by proxy side",
  )
  ax.plot(
    steps,
    series["triplet_bounded_by_proxy"],
    "^-",
    ms=3,
    label="triplets bounded by proxy loss",
  )
  ax.set_title("proxy-sample distance and fraction bounded")
  for ax in axes:
    ax.set_xlabel("training step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv: list[str]) -> None:
  del argv
  session = common.Session()
  steps = common.num_steps(DEFAULT_STEPS)
  seed = common.seeds(DEFAULT_SEEDS)[0]
  every = BOUND_EVERY.value
  config = common.make_config(
    {
      "loss.form": "paper",
      "loss.scale": 3.0,
      "seed": seed,
      "schedule.num_steps": steps,
      "evals.every_steps": 0,
      "evals.at_step_zero": False,
      "ckpt.every_steps": every,
      "ckpt.keep": steps // every + 1,
      "log_every_steps": every,
    }
  )
  workdir = common.workdir_of(QUESTION, f"proxy_nca_paper_seed{seed}")
  common.train(config, workdir, needs_checkpoint=True)
  results = measure_run(workdir)
  plot(results, os.path.join(common.OUT.value, "bound.png"))
  rows = [
    [
      step,
      f"{r['eps_mean']:.3f} / {r['eps_max']:.3f}",
      f"{r['proxy_nca']:.3f}",
      f"{r['nca_data']:.3f}",
      f"{r['nca_proxy_side']:.3f}",
      f"{r['nca_proxy_side'] - r['nca_data']:+.3f}",
      f"{r['nca_bounded_by_proxy_side']:.3f}",
      f"{r['nca_bounded_with_eps']:.3f}",
      f"{r['triplet_data']:.3f}",
      f"{r['triplet_proxy']:.3f}",
      f"{r['triplet_bounded_by_proxy']:.3f}",
      f"{r['triplet_bounded_with_eps']:.3f}",
    ]
    for step, r in sorted(results.items())
  ]
  table = evaluation.markdown_table(
    [
      "step",
      "eps mean / max",
      "L_proxy",
      "L_data (NCA)",
      "proxy side",
      "gap",
      "pairs bounded by proxy side",
      "pairs bounded with eps",
      "triplet, points",
      "triplet, proxies",
      "triplets bounded by proxies",
      "triplets bounded with eps",
    ],
    rows,
  )
  what = (
    f"One run: Proxy-NCA in the paper's form (positive proxy left out of "
    f"the denominator), scale s = {config.loss.scale} (alpha = 1/s), "
    f"{steps} steps, batch 64 random FMNIST-ZS training images (5 classes, "
    f"5 proxies), seed {seed}, Adam 1e-3, proxies x10. At step 0 (the "
    f"initial state) and at every checkpoint ({every} steps apart) both "
    "sides are computed on the batch the next step trains on. Means over "
    "the batch's (anchor, positive) pairs for NCA and over its (anchor, "
    f"positive, negative) triplets (margin {config.loss.margin}) for the "
    "triplet loss; eps = |x - p(x)| between unit vectors (0 to 2). "
    "'gap' = proxy side - L_data (positive: the proxy side bounds on "
    "average). 'bounded with eps' must be 1.000 (the inequality); 'by proxy "
    "side' is how often the proxy loss alone bounds the data loss."
  )
  common.write_results(
    common.OUT.value,
    "RQ1: does the proxy loss bound the loss over the points?",
    [
      common.command_line(),
      (__doc__ or "").split("\n\n  python -m")[0],
      what,
      table,
      "![bound](bound.png)",
      session.describe(),
    ],
  )


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  app.run(main)
