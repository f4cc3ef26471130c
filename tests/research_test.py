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
"""The research questions' measurements against independent references.

RQ1: the bound's terms against a float64 NumPy transcription, the
inequalities on generated inputs (hypothesis), and on a tiny real run the
measured proxy loss equals the loss the trainer logged on that batch. RQ3:
the ordinal counts against a brute-force loop. RQ2: steps to a target and
training time from hand-made metric records.
"""

import functools
import itertools
import json
import os
import shutil

import hypothesis
import jax
import numpy as np
import pytest
from absl import app, flags
from absl.testing import absltest, flagsaver, parameterized
from hypothesis import strategies as st

from configs import fashion_mnist
from proxy_nca_jax import config_defaults, losses
from proxy_nca_jax.training import metric_writer, trainer
from research import (
  common,
  rq1_bound,
  rq2_convergence,
  rq3_ordinal,
  rq4_losses,
  rq4_report,
  rq5_assignment,
  sampled_negatives,
  slow_start,
)
from tests.testing import tiny_run


def _unit(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _bound_reference(emb, labels, proxies, scale, margin):
  """Loops over pairs and triplets, float64 (rq1_bound's module doc)."""
  x, p = _unit(emb), _unit(proxies)
  n, c = len(x), len(p)
  sq = lambda a, b: float(np.sum((a - b) ** 2))  # noqa: E731
  eps = [np.sqrt(sq(x[i], p[labels[i]])) for i in range(n)]
  nca = {}
  for i, j in itertools.product(range(n), range(n)):
    negatives = [k for k in range(n) if labels[k] != labels[i]]
    if i == j or labels[j] != labels[i] or not negatives:
      continue
    data = sq(x[i], x[j]) + np.log(
      sum(np.exp(-sq(x[i], x[k])) for k in negatives)
    )
    proxy = scale * sq(x[i], p[labels[i]]) + np.log(
      sum(np.exp(-scale * sq(x[i], p[q])) for q in range(c) if q != labels[i])
    )
    n_max = max(np.sum(labels[negatives] == q) for q in range(c))
    side = proxy / scale + (1 - 1 / scale) * np.log(c - 1) + np.log(n_max)
    slack = 2 * eps[j] + 2 * max(eps[k] for k in negatives)
    nca[i, j] = (data, side, side + slack)
  triplets = {}
  for i, j, k in itertools.product(range(n), repeat=3):
    if i == j or labels[j] != labels[i] or labels[k] == labels[i]:
      continue
    data = max(0.0, sq(x[i], x[j]) - sq(x[i], x[k]) + margin)
    proxy = max(0.0, sq(x[i], p[labels[i]]) - sq(x[i], p[labels[k]]) + margin)
    triplets[i, j, k] = (data, proxy, proxy + 2 * eps[j] + 2 * eps[k])
  return nca, triplets, eps


_jitted_bound_terms = jax.jit(
  functools.partial(rq1_bound.bound_terms, margin=0.3),
  static_argnames="scale",
)


class BoundTest(parameterized.TestCase):
  @parameterized.parameters((1.0, 0.2, 0), (3.0, 0.1, 1), (16.0, 0.5, 2))
  def test_terms_match_float64_loops(self, scale, margin, seed):
    rng = np.random.default_rng(seed)
    labels = np.array([0, 0, 1, 2, 2, 2, 1, 3])
    emb = rng.normal(size=(8, 5)).astype(np.float32)
    proxies = rng.normal(size=(4, 5)).astype(np.float32)
    terms = jax.jit(
      functools.partial(rq1_bound.bound_terms, scale=scale, margin=margin)
    )(emb, labels, proxies)
    nca, triplets, eps = _bound_reference(emb, labels, proxies, scale, margin)
    np.testing.assert_allclose(terms["eps"], eps, rtol=1e-5, atol=1e-5)
    mask = np.asarray(terms["pair_mask"])
    self.assertEqual(set(zip(*np.nonzero(mask), strict=True)), set(nca))
    for (i, j), expected in nca.items():
      got = [
        terms[k][i, j] for k in ("nca_data", "nca_proxy_side", "nca_bound")
      ]
      np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    mask = np.asarray(terms["triplet_mask"])
    self.assertEqual(set(zip(*np.nonzero(mask), strict=True)), set(triplets))
    for (i, j, k), expected in triplets.items():
      got = [
        terms[n][i, j, k]
        for n in ("triplet_data", "triplet_proxy", "triplet_bound")
      ]
      np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

  def test_proxy_term_is_the_paper_form_loss(self):
    rng = np.random.default_rng(3)
    labels = np.array([0, 1, 2, 1, 0, 2])
    emb, proxies = rng.normal(size=(6, 4)), rng.normal(size=(3, 4))
    terms = jax.jit(
      functools.partial(rq1_bound.bound_terms, scale=3.0, margin=0.1)
    )(emb, labels, proxies)
    expected = jax.jit(
      functools.partial(losses.proxy_nca_loss, form="paper", scale=3.0)
    )(emb, labels, proxies)
    np.testing.assert_allclose(np.mean(terms["proxy_nca"]), expected, rtol=1e-5)

  @hypothesis.settings(
    max_examples=25, deadline=None, derandomize=True, database=None
  )
  @hypothesis.given(
    seed=st.integers(0, 2**31 - 1),
    eps=st.floats(0.0, 2.0),
    scale=st.sampled_from([1.0, 3.0, 16.0]),
    classes=st.sampled_from([2, 4]),
  )
  def test_inequalities_hold_within_eps(self, seed, eps, scale, classes):
    # The theorem's assumptions: unit proxies, unit points within eps of
    # their class's proxy, scale >= 1. Few shapes and scales: one compiled
    # function each.
    rng = np.random.default_rng(seed)
    proxies = _unit(rng.normal(size=(classes, 6)))
    labels = np.repeat(np.arange(classes), 3)
    # Each point at chord distance delta <= eps from its proxy on the unit
    # sphere: cos(theta) p + sin(theta) u, u a unit vector orthogonal to p,
    # |x - p| = 2 sin(theta / 2).
    anchors = proxies[labels]
    u = rng.normal(size=anchors.shape)
    u = _unit(u - np.sum(u * anchors, axis=1, keepdims=True) * anchors)
    delta = rng.uniform(0, eps, size=(len(labels), 1))
    theta = 2 * np.arcsin(delta / 2)
    points = np.cos(theta) * anchors + np.sin(theta) * u
    terms = _jitted_bound_terms(points, labels, proxies, scale=scale)
    # float32: a distance of 0 comes back as up to sqrt(rounding) ~ 1e-3.
    self.assertLessEqual(float(np.max(terms["eps"])), eps + 2e-3)
    pairs = np.asarray(terms["pair_mask"])
    triplets = np.asarray(terms["triplet_mask"])
    gap = np.asarray(terms["nca_bound"] - terms["nca_data"])[pairs]
    self.assertTrue(np.all(gap >= -1e-4), gap.min(initial=0))
    gap = np.asarray(terms["triplet_bound"] - terms["triplet_data"])[triplets]
    self.assertTrue(np.all(gap >= -1e-4), gap.min(initial=0))

  def test_refuses_scale_below_one(self):
    with self.assertRaisesRegex(ValueError, "scale >= 1"):
      rq1_bound.bound_terms(
        np.ones((2, 2)), np.array([0, 1]), np.eye(2), scale=0.5, margin=0.1
      )


@pytest.mark.slow
class BoundOnRealRunTest(tiny_run.PreparedDataTest):
  def test_measured_proxy_loss_is_the_logged_training_loss(self):
    config = tiny_run.tiny_config(
      self.root, loss__form="paper", loss__scale=3.0
    )
    workdir = str(self.root / "run")
    trainer.train_and_evaluate(config, workdir)
    results = rq1_bound.measure_run(workdir)
    logged = {
      r["step"]: r["loss"]
      for r in metric_writer.read_metrics(workdir)
      if "loss" in r
    }
    self.assertEqual(sorted(results), [0, 3, 6])
    # The checkpoint at step 3 and the batch of step 4: what step 4 logged.
    np.testing.assert_allclose(results[3]["proxy_nca"], logged[4], rtol=1e-4)
    for r in results.values():
      self.assertEqual(r["nca_bounded_with_eps"], 1.0)
      self.assertEqual(r["triplet_bounded_with_eps"], 1.0)


class OrdinalTest(parameterized.TestCase):
  @parameterized.parameters(0, 1, 2)
  def test_counts_match_brute_force(self, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=14)
    emb = rng.normal(size=(14, 3))
    # Ties in the data: a duplicated point.
    emb[5] = emb[2]
    proxies = rng.normal(size=(3, 3))
    got = rq3_ordinal.ordinal_counts(emb, labels, proxies)
    x, p = _unit(emb), _unit(proxies)
    d = lambda a, b: float(np.sum((a - b) ** 2))  # noqa: E731
    expected = dict.fromkeys(got, 0)
    for a, y, z in itertools.product(range(14), repeat=3):
      if y == a or labels[y] != labels[a] or labels[z] == labels[a]:
        continue
      data = d(x[a], x[y]) < d(x[a], x[z])
      proxy = d(x[a], p[labels[y]]) < d(x[a], p[labels[z]])
      expected["triplets"] += 1
      expected["data_ordered"] += data
      expected["proxy_ordered"] += proxy
      expected["preserved"] += data == proxy
    self.assertEqual(got, expected)


@pytest.mark.slow
class RunRecordTest(tiny_run.PreparedDataTest):
  """A finished run is recorded under --out and reused from the record."""

  def test_record_replaces_the_workdir_until_a_checkpoint_is_needed(self):
    root = self.root
    self.enterContext(
      flagsaver.flagsaver(
        (common.OUT, str(root / "out")),
        (common.WORKDIR_ROOT, str(root / "workdirs")),
      )
    )
    config = tiny_run.tiny_config(root, evals__at_step_zero=False)
    workdir = common.workdir_of("rq5", "tiny_seed0")
    trained = common.train(config, workdir)
    path = root / "out" / "runs" / "rq5" / "tiny_seed0.json"
    self.assertEqual(common.record_path(workdir), str(path))
    self.assertEqual(trained, metric_writer.read_metrics(workdir))
    self.assertIn("test/map@r", trained[-1])

    # The workdir gone (another session): the record answers, no training.
    shutil.rmtree(workdir)
    self.assertEqual(common.train(config, workdir), trained)
    self.assertFalse(os.path.exists(workdir))
    # Another config is not answered by it.
    other = tiny_run.tiny_config(root, evals__at_step_zero=False, seed=1)
    self.assertIsNone(common._recorded(other, str(path)))
    # A caller that reads checkpoints gets the run trained again.
    again = common.train(config, workdir, needs_checkpoint=True)
    self.assertEqual(common.checkpoint_steps(workdir), [3, 6])
    self.assertEqual([r["step"] for r in again], [r["step"] for r in trained])

    # A measure of the last checkpoint is kept beside the record...
    def last_step(config, model, state):
      del config, model
      return {"step": int(state.step)}

    self.assertEqual(
      common.measured_run(config, workdir, "last", last_step), {"step": 6}
    )
    self.assertTrue(os.path.exists(str(path).replace(".json", "_last.json")))
    # ... and read back without the workdir (the measure is not called).
    shutil.rmtree(workdir)
    self.assertEqual(
      common.measured_run(config, workdir, "last", None), {"step": 6}
    )
    self.assertFalse(os.path.exists(workdir))
    # So is a measure of the state the run starts from, with no workdir.
    self.assertEqual(
      common.measured_start(config, workdir, "last", last_step), {"step": 0}
    )
    self.assertTrue(
      os.path.exists(str(path).replace(".json", "_last_step0.json"))
    )
    self.assertFalse(os.path.exists(workdir))


@pytest.mark.slow
class ConvergenceTest(absltest.TestCase):
  def test_first_step_reaching_and_holding(self):
    curve = {0: 0.5, 50: 0.3, 100: 0.45, 150: 0.38, 200: 0.41, 250: 0.42}
    self.assertEqual(rq2_convergence.first_step_reaching(curve, 0.4), 200)
    self.assertEqual(rq2_convergence.first_step_reaching(curve, 0.3), 50)
    self.assertIsNone(rq2_convergence.first_step_reaching(curve, 0.43))
    self.assertEqual(rq2_convergence.first_step_crossing(curve, 0.43), 100)
    self.assertIsNone(rq2_convergence.first_step_crossing(curve, 0.6))

  def test_training_seconds_sum_the_logged_intervals(self):
    records = [
      {"step": 0, "test/map@r": 0.3},
      {"step": 50, "loss": 1.0, "steps_per_sec": 5.0},
      {"step": 100, "loss": 1.0, "steps_per_sec": 2.0},
      {"step": 100, "test/map@r": 0.4},
    ]
    self.assertEqual(
      common.training_seconds(records), {0: 0.0, 50: 10.0, 100: 35.0}
    )

  def test_endpoint_table_by_hand(self):
    def run(final_map, rate):
      return [
        {"step": 0, "test/map@r": 0.1, "test/recall@1": 0.5, "test/nmi": 0.2},
        {"step": 10, "loss": 1.0, "steps_per_sec": rate},
        {
          "step": 10,
          "test/map@r": final_map,
          "test/recall@1": 0.9,
          "test/nmi": 0.4,
          "test/r_precision": 0.3,
        },
      ]

    table = rq2_convergence.endpoint_table(
      {"proxy_nca": [run(0.5, 2.0), run(0.7, 1.0)]}
    ).splitlines()
    self.assertEqual(
      table[0],
      "| loss | network | recall@1 | nmi | map@r | training seconds |",
    )
    self.assertEqual(
      table[2],
      "| proxy_nca | untrained | 0.500 ± 0.000 | 0.200 ± 0.000 "
      "| 0.100 ± 0.000 | 0 ± 0 |",
    )
    # MAP@R 0.5 and 0.7: mean 0.6, sample std 0.1414; 5 s and 10 s.
    self.assertEqual(
      table[3],
      "| proxy_nca | step 10 | 0.900 ± 0.000 | 0.400 ± 0.000 "
      "| 0.600 ± 0.141 | 8 ± 4 |",
    )

  def test_summarize_gives_one_table_per_target_fraction(self):
    def run(curve):
      records = []
      for step, value in curve.items():
        if step:
          records.append({"step": step, "loss": 1.0, "steps_per_sec": 2.0})
        records.append({"step": step, "test/map@r": value, "test/recall@1": 1})
      return records

    runs = {
      "fast": [
        run({0: 0.125, 10: 0.5, 20: 1.0}),
        run({0: 0.125, 10: 0.75, 20: 1.0}),
      ],
      "slow": [
        run({0: 0.125, 10: 0.625, 20: 0.75}),
        run({0: 0.125, 10: 0.375, 20: 0.25}),
      ],
    }
    tables, targets = rq2_convergence.summarize(runs, [1.0, 0.5])
    # Untrained 0.125; the lower mean final MAP@R is slow's (0.75 + 0.25) / 2.
    self.assertEqual(targets, [0.5, 0.3125])
    self.assertLen(tables, 3)  # two targets, then the endpoints
    at_final, halfway = (t.splitlines() for t in tables[:2])
    self.assertIn("first step at MAP@R >= 0.5000, per seed", at_final[0])
    self.assertIn("first step at MAP@R >= 0.3125, per seed", halfway[0])
    # Columns from the crossing on: first crossing, reach and hold per seed,
    # its mean ± std, training seconds to it (10 steps at 2 steps/s: 5 s).
    self.assertTrue(at_final[2].endswith("| 10, 10 | 10, 10 | 10 ± 0 | 5, 5 |"))
    self.assertTrue(
      at_final[3].endswith("| 10, - | 10, not reached | 10 | 5, - |")
    )
    self.assertTrue(
      halfway[3].endswith("| 10, 10 | 10, not reached | 10 | 5, - |")
    )

  def test_mean_std_uses_the_sample_deviation(self):
    self.assertEqual(common.mean_std([1.0, 2.0, 3.0]), "2.000 ± 1.000")


class SlowStartTest(absltest.TestCase):
  def test_chance_of_a_positive_matches_counting(self):
    # 3 proxies, batches of 2: a given proxy is drawn by neither image in
    # (2/3)^2 = 4/9 of the batches, so it is a positive in 5/9.
    self.assertAlmostEqual(slow_start.positive_probability(3, 2), 5 / 9)
    # GLYPHS-ZS: 900 proxies, batch 64: about once in 14.6 steps.
    self.assertAlmostEqual(
      1 / slow_start.positive_probability(900, 64), 14.56, places=2
    )

  def test_every_variant_changes_one_known_field(self):
    config = fashion_mnist.get_config()
    for study in (slow_start, sampled_negatives, rq2_convergence):
      for name, (loss, changes) in study.VARIANTS.items():
        self.assertIn(loss, ("proxy_nca", "triplet_semihard"), name)
        self.assertLessEqual(len(changes), 1, name)
        for key in changes:
          section, field = key.split(".")
          self.assertIn(field, config[section], name)

  def test_list_flags_of_numbers_parse_or_say_what_they_take(self):
    with flagsaver.flagsaver(target_fraction=["0.8", "1"]):
      self.assertEqual(
        common.floats_of(rq2_convergence.TARGET_FRACTIONS), [0.8, 1.0]
      )
    with flagsaver.flagsaver(target_fraction=["0.8", "full"]):
      with self.assertRaisesRegex(
        app.UsageError, r"--target_fraction takes numbers .*'0.8,full'"
      ):
        common.floats_of(rq2_convergence.TARGET_FRACTIONS)

  def test_rq2_runs_are_losses_or_variants(self):
    self.assertEqual(rq2_convergence.run_of("nca"), ("nca", {}))
    self.assertEqual(
      rq2_convergence.run_of("proxy_nca_class_means"),
      ("proxy_nca", {"proxies.init": "class_means"}),
    )
    self.assertEqual(
      rq2_convergence.run_of("proxy_nca_paper"),
      ("proxy_nca", {"loss.form": "paper"}),
    )
    with self.assertRaisesRegex(app.UsageError, "proxy_nca_class_means"):
      rq2_convergence.run_of("proxy_nca_means")


class LossSearchTest(absltest.TestCase):
  """RQ4's search on the validation classes (research/rq4_losses.py)."""

  def test_every_loss_and_both_forms_run_with_a_known_field(self):
    self.assertCountEqual(rq4_losses.RUNS, [*losses.LOSSES, "proxy_nca_paper"])
    config = fashion_mnist.get_config()
    for name in rq4_losses.RUNS:
      fields = rq4_losses.searched_fields(name)
      # Proxy losses also search the proxies' learning rate.
      proxy = rq4_losses.RUNS[name][0] in losses.PROXY_LOSSES
      self.assertLen(fields, 2 if proxy else 1, name)
      for field in fields:
        section, key = field.split(".")
        self.assertIn(key, config[section], name)

  def test_the_softmax_losses_search_the_scale_of_their_logits(self):
    self.assertEqual(
      {name: rq4_losses.SEARCHED[name] for name in losses.CLASS_WEIGHT_LOSSES},
      {
        "cosface": "loss.cosine_scale",
        "arcface": "loss.cosine_scale",
        "subcenter_arcface": "loss.cosine_scale",
        "dynamic_arcface": "loss.cosine_scale",
        "soft_triple": "loss.soft_triple_la",
      },
    )
    self.assertEqual(
      rq4_losses.searched_fields("normalized_softmax"),
      ["loss.softmax_temperature", "optimizer.proxy_lr_mult"],
    )

  def test_candidates_are_half_one_and_twice_config_first(self):
    self.assertEqual(rq4_losses.candidates("loss.scale", 8.0), [8.0, 4.0, 16.0])
    self.assertEqual(
      rq4_losses.candidates("optimizer.proxy_lr_mult", 30.0),
      [30.0, 10.0, 90.0],
    )

  def test_best_value_prefers_the_earlier_on_ties(self):
    self.assertEqual(
      rq4_losses.best_value({8.0: 0.5, 4.0: 0.7, 16.0: 0.6}, 0.0), 4.0
    )
    self.assertEqual(
      rq4_losses.best_value({8.0: 0.5, 4.0: 0.5, 16.0: 0.4}, 0.0), 8.0
    )
    self.assertEqual(
      rq4_losses.best_value({8.0: 0.5, 4.0: 0.6, 16.0: 0.6}, 0.0), 4.0
    )

  def test_best_value_keeps_the_config_value_within_the_margin(self):
    # The previous GLYPHS-ZS search chose x300 over x100 for 0.004.
    scores = {100.0: 0.865, 33.3: 0.868, 300.0: 0.869}
    self.assertEqual(rq4_losses.best_value(scores, 0.01), 100.0)
    self.assertEqual(rq4_losses.best_value(scores, 0.003), 300.0)
    # Scale 16 lost by 0.04: a margin never makes a worse value win.
    self.assertEqual(
      rq4_losses.best_value({8.0: 0.862, 4.0: 0.865, 16.0: 0.823}, 0.01), 8.0
    )
    self.assertEqual(
      rq4_losses.best_value({8.0: 0.80, 4.0: 0.85, 16.0: 0.823}, 0.01), 4.0
    )

  def test_settings_name_is_sorted_and_short(self):
    self.assertEqual(
      rq4_losses.settings_name(
        {"optimizer.proxy_lr_mult": 100 / 3, "loss.scale": 8.0}
      ),
      "scale=8,proxy_lr_mult=33.3333",
    )


class RecordFromBeforeNewFieldsTest(absltest.TestCase):
  """A record of a config from before optional fields still answers it."""

  def _record(self, config_json: dict) -> str:
    path = os.path.join(self.create_tempdir().full_path, "run.json")
    with open(path, "w") as f:
      json.dump({"config": config_json, "metrics": [{"step": 6}]}, f)
    return path

  def test_missing_fields_count_as_their_defaults(self):
    config = fashion_mnist.get_config()
    old = json.loads(config.to_json())
    new_fields = [f for f in config_defaults.OPTIONAL_FIELDS if "loss." in f]
    self.assertIn("loss.cosine_scale", new_fields)
    for field in new_fields:
      del old["loss"][field.split(".")[1]]
    path = self._record(old)
    self.assertEqual(common._recorded(config, path), [{"step": 6}])
    # A config with another value of a field the record lacks: not its run.
    with config.unlocked():
      config.loss.cosine_scale = 32.0
    self.assertIsNone(common._recorded(config, path))

  def test_a_recorded_value_other_than_the_default_is_not_reused(self):
    config = fashion_mnist.get_config()
    recorded = json.loads(config.to_json())
    recorded["loss"]["cosine_scale"] = 32.0
    self.assertIsNone(common._recorded(config, self._record(recorded)))

  def test_a_record_with_other_similarity_tiles_is_reused(self):
    # The tile size changes no metric (exact evaluation): the records of
    # docs/glyphs_rq4, made with tiles of 2048, answer today's default.
    config = fashion_mnist.get_config()
    recorded = json.loads(config.to_json())
    recorded["evals"]["block_size"] = 2 * config.evals.block_size
    self.assertEqual(
      common._recorded(config, self._record(recorded)), [{"step": 6}]
    )
    # Another free field (it changes which rows exist) still does not.
    recorded["evals"]["every_steps"] = config.evals.every_steps + 1
    self.assertIsNone(common._recorded(config, self._record(recorded)))


_GLYPHS_RQ4 = os.path.join(
  os.path.dirname(__file__), "..", "docs", "glyphs_rq4"
)


class GlyphsRecordsTest(absltest.TestCase):
  """The committed docs/glyphs_rq4 runs answer their command (issue 32 runs
  the new losses on top of them, retraining none)."""

  def test_every_committed_loss_is_read_back_without_training(self):
    config_file = os.path.join(_GLYPHS_RQ4, "..", "..", "configs", "glyphs.py")
    with flagsaver.as_parsed(
      out=_GLYPHS_RQ4,
      config=config_file,
      search_steps="500",
      select_every="250",
      triplet_samples_per_class="8",
      max_eval_examples="10000",
    ):
      outcomes = rq4_losses.recorded_outcomes(2000, [0, 1, 2])
    for name in (
      "proxy_nca_paper",
      "proxy_anchor",
      "npairs",
      "triplet_semihard",
    ):
      self.assertIn(name, outcomes)
    # The table of docs/glyphs_rq4/results.md from before the new fields.
    means = {
      name: round(float(np.mean([r["map@r"] for r in o.selected])), 3)
      for name, o in outcomes.items()
    }
    self.assertEqual(means["proxy_nca_paper"], 0.945)
    self.assertEqual(means["npairs"], 0.895)
    self.assertEqual(
      outcomes["proxy_anchor"].settings,
      "proxy_anchor_alpha=16,proxy_lr_mult=100",
    )
    self.assertEqual(
      outcomes["triplet_semihard"].search_lines,
      (
        "- triplet_semihard: loss.margin 0.2: 0.819, 0.1: 0.799, "
        "0.4: 0.843 -> 0.4",
      ),
    )


def _outcome(map_at_r, nmi=0.5, loss="proxy_nca"):
  """An outcome whose every metric is its seed's MAP@R, NMI aside."""
  selected = [
    {"step": 10, **dict.fromkeys(rq4_report.COLUMNS, m), "nmi": nmi}
    for m in map_at_r
  ]
  rows = [
    {"step": 10, "loss": 1.0, "steps_per_sec": 2.0},
    {"step": 10, "val/map@r": 0.5},
  ]
  return rq4_report.Outcome(
    loss=loss,
    settings="",
    search_lines=(),
    runs=[rows] * len(map_at_r),
    selected=selected,
    seconds=[5.0] * len(map_at_r),
  )


class LossReportTest(absltest.TestCase):
  """RQ4's report (research/rq4_report.py) from hand-made outcomes."""

  def test_standing_ranks_proxy_nca_against_the_best_other(self):
    outcomes = {
      "proxy_nca_paper": _outcome([0.8, 0.9]),
      "cosface": _outcome([0.9, 1.0], loss="cosface"),
      "npairs": _outcome([0.5, 0.7], loss="npairs"),
    }
    text = rq4_report.standing(outcomes, "proxy_nca_paper")
    self.assertIn(
      "by MAP@R 2nd of 3 at 0.850 ± 0.071, the best being cosface at "
      "0.950 ± 0.071 (difference -0.100)",
      text,
    )
    self.assertIn(
      "Ranked by mean test MAP@R: cosface 0.950, proxy_nca_paper 0.850, "
      "npairs 0.600.",
      text,
    )

  def test_a_subset_gets_its_own_table_and_the_missing_are_named(self):
    out = self.create_tempdir().full_path
    outcomes = {
      "proxy_nca": _outcome([0.7, 0.7]),
      "proxy_nca_paper": _outcome([0.8, 0.9]),
      "npairs": _outcome([0.5, 0.7], loss="npairs"),
    }
    untrained = [dict.fromkeys(rq4_report.COLUMNS, 0.1)] * 2
    path = rq4_report.write(
      out,
      "TOY",
      ["head"],
      "searched:",
      outcomes,
      ["proxy_nca_paper", "cosface", "npairs"],
      untrained,
      ["tail"],
    )
    with open(path) as f:
      text = f.read()
    self.assertIn("Not recorded yet (still to run): cosface.", text)
    compared, every = text.split("## Every loss recorded")
    self.assertIn("## The losses compared (2 recorded)", compared)
    self.assertNotIn("| proxy_nca |", compared)
    self.assertIn("| proxy_nca |", every)
    self.assertIn(
      "Where Proxy-NCA (proxy_nca_paper) stands among these 2", compared
    )
    for figure in (
      "comparison",
      "comparison_curves",
      "losses",
      "validation_curves",
    ):
      self.assertTrue(
        os.path.exists(os.path.join(out, f"{figure}.png")), figure
      )


class AssignmentSettingsTest(absltest.TestCase):
  def test_fmnist_zs_settings_are_those_of_docs_rq5(self):
    # The runs of docs/rq5 (5 training classes), so they are reused.
    self.assertEqual(
      rq5_assignment.settings(5, [0.6, 1.0, 2.0]),
      {
        "static, 5 proxies": ("static", None, "normal"),
        "dynamic, 3 proxies": ("dynamic", 3, "normal"),
        "dynamic, 5 proxies": ("dynamic", 5, "normal"),
        "dynamic, 10 proxies": ("dynamic", 10, "normal"),
        "dynamic, 5 proxies, class-mean init": ("dynamic", None, "class_means"),
      },
    )

  def test_glyphs_zs_proxy_counts(self):
    runs = rq5_assignment.settings(900, [0.1, 0.5, 1.0, 2.0])
    self.assertEqual(
      [n for a, n, _ in runs.values() if a == "dynamic" and n],
      [90, 450, 900, 1800],
    )

  def test_proxy_usage_by_hand(self):
    # Five images on the axes; proxy 0 leans to +x, proxy 1 to +y (twice
    # as long: the norm must not matter), proxy 2 to -x, proxy 3 unused.
    embeddings = np.array(
      [[1, 0], [0.8, 0.6], [0, 1], [0.6, 0.8], [-1, 0]], np.float64
    )
    classes = np.array([7, 8, 8, 8, 9])
    proxies = np.array([[1, 0.1], [0.2, 2], [-1, 0.05], [0, -1]])
    # Nearest: 0, 0, 1, 1, 2. Proxy 0 holds classes 7 and 8 (one of its
    # two images agrees), proxy 1 two of class 8, proxy 2 one of class 9.
    self.assertEqual(
      rq5_assignment.proxy_usage(embeddings, classes, proxies),
      {"classes": 3, "in_use": 3, "purity": 4 / 5},
    )


def setUpModule():
  flags.FLAGS.mark_as_parsed()


if __name__ == "__main__":
  absltest.main()
