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
"""Tests of losses/margin_softmax.py, the class-weight losses.

Three independent references, never the code under test:

- pytorch-metric-learning 2.9.0 (PML) in float64, value and gradients with
  respect to the embeddings and the class weights. PML's weight matrix
  (``W``, ``fc`` for SoftTripleLoss) is (embedding_size, num_classes * K):
  our proxies transposed, the same class-major order. Units: ArcFaceLoss's
  and SubCenterArcFaceLoss's margin is in DEGREES in PML 2.x (ours in
  RADIANS; every case below names its margin in degrees and converts it for
  us); CosFace's and SoftTriple's margins are cosines in both. PML's
  SoftTripleLoss has no centre-merging regulariser: parity at tau = 0;
- values written by hand from the papers' formulas on 2-D unit vectors at
  chosen angles, and a float64 NumPy loop transcription of SoftTriple with
  its regulariser (tau > 0);
- properties: Normalized Softmax as Proxy-NCA's softmax form and as a
  cos / T cross-entropy, ArcFace at cos = +-1 and across theta = pi - m,
  zero embeddings, and the errors for bad options. (jit == eager, and
  finiteness and batch-order invariance on hypothesis' inputs, for every
  loss through the config: losses_test.LossPropertiesTest, marked slow;
  eager evaluation compiles each operation on its own, seconds a loss.)

The jitted functions are cached by loss and options, and the cases of a
loss share shapes, so each program is compiled once (compilation is most
of this module's time).
"""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import torch
from absl.testing import absltest, parameterized
from pytorch_metric_learning import losses as pml_losses

from proxy_nca_jax import losses
from tests.testing import references

# Parity: max |ours - PML| <= RTOL * max |PML| over each compared array
# (relative error of the value; of a gradient, relative to its largest
# entry). A single class's loss and gradients are 0: float64 gives exactly
# 0, Normalized Softmax's float32 path rounding (-6e-8, gradients 3e-8), so
# its arrays are compared to RTOL * max(max |PML|, 1).
RTOL = 1e-5
ARCFACE_LOSSES = ("arcface", "subcenter_arcface")


def _unit(v):
  v = np.float64(v)
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _at(*degrees):
  """2-D unit vectors at ``degrees``, (len(degrees), 2) float64."""
  radians = np.radians(np.float64(degrees))
  return np.stack([np.cos(radians), np.sin(radians)], axis=-1)


def _assert_relative(got, want, rtol=RTOL, what="", floor=1e-12):
  """max |got - want| <= rtol * max(max |want|, floor)."""
  got, want = np.float64(got), np.float64(want)
  chex.assert_equal_shape((got, want))
  scale = max(float(np.max(np.abs(want), initial=0.0)), floor)
  np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale, err_msg=what)


def _k(options):
  return dict(options).get("centers_per_class", 1)


@functools.cache
def _compiled(name, options, grads=True):
  """jit of our loss ``name`` with ``options`` (a tuple of items, our
  units), with its gradients w.r.t. the embeddings and the proxies."""
  fn = functools.partial(getattr(losses, f"{name}_loss"), **dict(options))
  return jax.jit(jax.value_and_grad(fn, argnums=(0, 2)) if grads else fn)


def _ours(name, options, x, labels, proxies, grads=True):
  """(value, grad_x, grad_proxies), or the value, in float64 (x64 on);
  Normalized Softmax in float32 (its documented precision: it is
  Proxy-NCA's float32 path)."""
  fn = _compiled(name, tuple(sorted(options.items())), grads)
  labels = np.int32(labels)
  if name == "normalized_softmax":
    out = fn(np.float32(x), labels, np.float32(proxies))
    want_dtype = np.float32
  else:
    with jax.enable_x64(True):
      out = fn(
        jnp.asarray(x, jnp.float64), labels, jnp.asarray(proxies, jnp.float64)
      )
    want_dtype = np.float64
  for array in jax.tree.leaves(out):
    chex.assert_type(array, want_dtype)
  if not grads:
    return np.float64(out)
  value, (grad_x, grad_p) = out
  return np.float64(value), np.float64(grad_x), np.float64(grad_p)


def _pml_module(name, num_classes, dim, pml_options):
  """PML's loss module in float64 and the name of its weight matrix."""
  if name == "normalized_softmax":
    module = pml_losses.NormalizedSoftmaxLoss(num_classes, dim, **pml_options)
  elif name == "cosface":
    module = pml_losses.CosFaceLoss(num_classes, dim, **pml_options)
  elif name == "arcface":
    module = pml_losses.ArcFaceLoss(num_classes, dim, **pml_options)
  elif name == "subcenter_arcface":
    module = pml_losses.SubCenterArcFaceLoss(
      num_classes=num_classes, embedding_size=dim, **pml_options
    )
  else:
    module = pml_losses.SoftTripleLoss(num_classes, dim, **pml_options)
  return module.double(), "fc" if name == "soft_triple" else "W"


def _pml(name, pml_options, x, labels, proxies, num_classes):
  """(value, grad_x, grad_proxies) of PML's loss, float64, by backward."""
  module, weight_name = _pml_module(name, num_classes, x.shape[1], pml_options)
  weight = getattr(module, weight_name)
  weight.data = torch.tensor(np.float64(proxies).T, dtype=torch.float64)
  embeddings = torch.tensor(np.float64(x), requires_grad=True)
  value = module(embeddings, torch.tensor(np.int64(labels)))
  value.backward()
  return (
    value.item(),
    embeddings.grad.numpy().copy(),
    weight.grad.numpy().T.copy(),
  )


def _options(name, pml_options):
  """PML's options in our names and units (degrees -> radians, tau 0)."""
  options = dict(pml_options)
  if name in ARCFACE_LOSSES:
    options["margin"] = math.radians(options["margin"])  # PML: degrees.
  if name == "subcenter_arcface":
    options["centers_per_class"] = options.pop("sub_centers")
  if name == "soft_triple":
    options["tau"] = 0.0  # PML has no regulariser.
  return options


def _parity_case(kind, seed, batch, classes, dim, k):
  """(embeddings, labels, proxies (classes * k, dim)), float64.

  kind: "random"; "one_class" (every sample of class 2 or 0); "duplicates"
  (copies of embeddings with the same and other labels, and, K > 1, each
  class's first two centres equal, with samples nearest them: ties);
  "opposite" (a class's centres close together, half the samples nearly
  opposite their class: theta + m > pi for ArcFace's margins).
  """
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(batch, dim))
  labels = rng.integers(0, classes, size=batch)
  proxies = rng.normal(size=(classes * k, dim))
  if kind == "one_class":
    labels[:] = min(2, classes - 1)
  elif kind == "duplicates":
    if k > 1:
      proxies[1::k] = proxies[::k]
      for i in (4, 5, 6):
        x[i] = proxies[labels[i] * k] + 0.05 * rng.normal(size=dim)
    x[1] = x[0]
    labels[1] = labels[0]
    x[3] = 2.0 * x[2]
    labels[3] = (labels[2] + 1) % classes
  elif kind == "opposite":
    base = rng.normal(size=(classes, 1, dim))
    proxies = (base + 0.1 * rng.normal(size=(classes, k, dim))).reshape(
      classes * k, dim
    )
    half = batch // 2 or 1
    x[:half] = -base[labels[:half], 0] + 0.05 * rng.normal(size=(half, dim))
  return x, labels, proxies


# PML's defaults, in PML's units (ArcFace margins in degrees).
PML_DEFAULTS = {
  "normalized_softmax": {"temperature": 0.05},
  "cosface": {"margin": 0.35, "scale": 64.0},
  "arcface": {"margin": 28.6, "scale": 64.0},
  "subcenter_arcface": {"margin": 28.6, "scale": 64.0, "sub_centers": 3},
  "soft_triple": {
    "centers_per_class": 10,
    "la": 20.0,
    "gamma": 0.1,
    "margin": 0.01,
  },
}
# Batch, classes, dim of the cases at PML's defaults (other tests reuse
# their compiled programs).
GENERAL = (8, 4, 5)
_KINDS = ("random", "one_class", "duplicates")
_ARC_KINDS = (*_KINDS, "opposite")
# (loss, PML's options in PML's units, [(kind, batch, classes, dim)]): per
# loss the defaults on GENERAL with every kind of case, a batch of one and
# a single class at other margins and scales (and, for ArcFace, a margin of
# 120 degrees on GENERAL: theta + m > pi for most samples).
PARITY_SETS = [
  *(
    (name, PML_DEFAULTS[name], [(kind, *GENERAL) for kind in kinds])
    for name, kinds in (
      ("normalized_softmax", _KINDS),
      ("cosface", _KINDS),
      ("arcface", _ARC_KINDS),
      ("subcenter_arcface", _ARC_KINDS),
      ("soft_triple", _KINDS),
    )
  ),
  ("normalized_softmax", {"temperature": 1.0}, [("random", 1, 3, 4)]),
  ("normalized_softmax", {"temperature": 0.2}, [("random", 6, 1, 4)]),
  ("cosface", {"margin": 0.0, "scale": 1.0}, [("random", 1, 3, 4)]),
  ("cosface", {"margin": 0.8, "scale": 16.0}, [("random", 6, 1, 4)]),
  (
    "arcface",
    {"margin": 120.0, "scale": 16.0},
    [("random", *GENERAL), ("opposite", 1, 3, 4)],
  ),
  ("arcface", {"margin": 10.0, "scale": 1.0}, [("random", 6, 1, 4)]),
  (
    "subcenter_arcface",
    {"margin": 120.0, "scale": 8.0, "sub_centers": 2},
    [("random", *GENERAL), ("opposite", 1, 3, 4)],
  ),
  (
    "subcenter_arcface",
    {"margin": 45.0, "scale": 32.0, "sub_centers": 4},
    [("duplicates", 8, 1, 4)],
  ),
  (
    "soft_triple",
    {"centers_per_class": 2, "la": 5.0, "gamma": 1.0, "margin": 0.3},
    [("random", 1, 3, 4)],
  ),
  (
    "soft_triple",
    {"centers_per_class": 1, "la": 20.0, "gamma": 0.1, "margin": 0.0},
    [("random", 6, 1, 4)],
  ),
]


def _parity_name(name, pml_options):
  values = "_".join(f"{key}{value:g}" for key, value in pml_options.items())
  return f"{name}_{values}".replace(".", "p")


class PmlParityTest(parameterized.TestCase):
  """Value and gradients equal PML's (float64) to RTOL, relative."""

  @parameterized.named_parameters(
    (_parity_name(name, pml_options), name, pml_options, cases)
    for name, pml_options, cases in PARITY_SETS
  )
  def test_matches_pml(self, name, pml_options, cases):
    options = _options(name, pml_options)
    k = _k(options)
    for seed, (kind, batch, classes, dim) in enumerate(cases):
      x, labels, proxies = _parity_case(kind, seed, batch, classes, dim, k)
      if name == "normalized_softmax":  # Our float32 inputs, for both.
        x, proxies = np.float64(np.float32(x)), np.float64(np.float32(proxies))
      got = _ours(name, options, x, labels, proxies)
      want = _pml(name, pml_options, x, labels, proxies, classes)
      floor = 1.0 if name == "normalized_softmax" else 1e-12
      _assert_relative(got[0], want[0], what=f"{kind}: value", floor=floor)
      for what, a, b in zip(
        ("grad_x", "grad_w"), got[1:], want[1:], strict=True
      ):
        _assert_relative(a, b, what=f"{kind}: {what}", floor=floor)
      if kind == "opposite":
        self._assert_both_arcface_branches(x, labels, proxies, k, options)

  def _assert_both_arcface_branches(self, x, labels, proxies, k, options):
    """The case has samples on both sides of theta = pi - m (PML's test:
    angles <= pi - m), so the fallback branch was compared too."""
    w = _unit(proxies).reshape(-1, k, x.shape[1])
    cosines = np.einsum("bd,bkd->bk", _unit(x), w[labels])
    theta = np.arccos(np.clip(cosines.max(axis=1), -1, 1))
    fallback = theta > math.pi - options["margin"]
    if len(x) > 1:
      self.assertTrue(np.any(~fallback), "no sample before pi - m")
    self.assertTrue(np.any(fallback), "no sample past pi - m")


def _soft_triple_reference(x, labels, proxies, k, la, gamma, margin, tau):
  """SoftTriple ([5], Eq. 8 and 11), float64, one sample, class and centre
  at a time; the regulariser's 1e-5 as the authors' code."""
  x, w = _unit(x), _unit(proxies)
  num_classes = len(w) // k
  total = 0.0
  for xi, yi in zip(x, labels, strict=True):
    logits = []
    for c in range(num_classes):
      cosines = [math.fsum(xi * w[c * k + j]) for j in range(k)]
      weights = [math.exp(v / gamma) for v in cosines]
      similarity = math.fsum(
        a * v for a, v in zip(weights, cosines, strict=True)
      ) / sum(weights)
      logits.append(la * (similarity - (margin if c == yi else 0.0)))
    peak = max(logits)
    lse = peak + math.log(math.fsum(math.exp(v - peak) for v in logits))
    total += lse - logits[yi]
  regulariser = 0.0
  for c in range(num_classes):
    for a in range(k):
      for b in range(a + 1, k):
        dot = math.fsum(w[c * k + a] * w[c * k + b])
        regulariser += math.sqrt(2.0 + 1e-5 - 2.0 * dot)
  if k > 1:
    regulariser /= num_classes * k * (k - 1)
  return total / len(x) + tau * regulariser


def _normalized_softmax_reference(x, labels, proxies, temperature):
  """Cross-entropy of the logits cos(x, w_c) / T, float64, per sample."""
  x, w = _unit(x), _unit(proxies)
  total = 0.0
  for xi, yi in zip(x, labels, strict=True):
    logits = [math.fsum(xi * wc) / temperature for wc in w]
    peak = max(logits)
    lse = peak + math.log(math.fsum(math.exp(v - peak) for v in logits))
    total += lse - logits[yi]
  return total / len(x)


class HandComputedTest(parameterized.TestCase):
  """Values from the formulas by hand, on 2-D unit vectors: a loss of the
  form -log(e^t / (e^t + sum e^o)) = log(1 + sum e^(o - t))."""

  def _value(self, name, x, labels, proxies, **options):
    return _ours(name, options, x, labels, proxies, grads=False)

  def test_normalized_softmax(self):
    # Class weights at 0, 120 and 240 degrees, the sample at 0 degrees;
    # T = 0.5: logits 1 / T = 2 and -0.5 / T = -1, -1.
    proxies = np.array([[1, 0], [-0.5, 0.75**0.5], [-0.5, -(0.75**0.5)]])
    got = self._value(
      "normalized_softmax", proxies[:1], [0], proxies, temperature=0.5
    )
    np.testing.assert_allclose(got, math.log(1 + 2 * math.exp(-3)), rtol=1e-6)

  def test_cosface(self):
    # Classes at 0 and 90 degrees, the sample at 60 degrees, class 0:
    # target s (cos 60 - m), other s cos 30.
    s, m = 4.0, 0.25
    got = self._value("cosface", _at(60), [0], _at(0, 90), margin=m, scale=s)
    want = math.log(1 + math.exp(s * (math.sqrt(3) / 2 - (0.5 - m))))
    np.testing.assert_allclose(got, want, rtol=1e-12)

  def test_arcface_both_branches(self):
    # Classes at 0 and 90 degrees, margin 60 degrees (pi / 3 radians).
    # Sample at 30 degrees, class 0: theta + m = 90, target cos 90 = 0;
    # other cos 60 = 1/2. Sample at 150 degrees, class 0: theta + m = 210 >
    # 180, target cos 150 - m sin m; other cos 60 = 1/2.
    s, m = 2.0, math.pi / 3
    got = self._value(
      "arcface", _at(30, 150), [0, 0], _at(0, 90), margin=m, scale=s
    )
    fallback = -math.sqrt(3) / 2 - m * math.sqrt(3) / 2
    want = (
      math.log(1 + math.exp(s * 0.5))
      + math.log(1 + math.exp(s * (0.5 - fallback)))
    ) / 2
    np.testing.assert_allclose(got, want, rtol=1e-12)

  def test_subcenter_arcface(self):
    # K = 2: class 0 at 0 and 180 degrees, class 1 at 90 and 270; margin
    # 60 degrees. Sample at 30 degrees, class 0: nearest sub-centre 0 at 30
    # degrees, target cos 90 = 0; class 1's nearest at 60: cos 60 = 1/2.
    # Sample at 200 degrees, class 1: nearest 270 at 70 degrees, target
    # cos 130; class 0's nearest 180 at 20 degrees: cos 20.
    s, m = 1.0, math.pi / 3
    proxies = _at(0, 180, 90, 270)
    got = self._value(
      "subcenter_arcface",
      _at(30, 200),
      [0, 1],
      proxies,
      margin=m,
      scale=s,
      centers_per_class=2,
    )
    cos = lambda degrees: math.cos(math.radians(degrees))  # noqa: E731
    want = (
      math.log(1 + math.exp(s * 0.5))
      + math.log(1 + math.exp(s * (cos(20) - cos(130))))
    ) / 2
    np.testing.assert_allclose(got, want, rtol=1e-12)

  def test_soft_triple_with_regulariser(self):
    # K = 2: class 0 at 0 and 90 degrees, class 1 at 180 and 270; the
    # sample at 0 degrees, class 0; gamma = 1/2. Class 0: cosines (1, 0),
    # weights softmax(2, 0), S_0 = e^2 / (e^2 + 1). Class 1: cosines
    # (-1, 0), weights softmax(-2, 0), S_1 = -1 / (e^2 + 1). Each class's
    # two centres are orthogonal: R = 2 sqrt(2 + 1e-5) / (C K (K - 1)).
    la, delta, tau = 3.0, 0.1, 0.3
    got = self._value(
      "soft_triple",
      _at(0),
      [0],
      _at(0, 90, 180, 270),
      centers_per_class=2,
      la=la,
      gamma=0.5,
      margin=delta,
      tau=tau,
    )
    e2 = math.exp(2)
    s0, s1 = e2 / (e2 + 1), -1 / (e2 + 1)
    want = math.log(1 + math.exp(la * (s1 - (s0 - delta))))
    want += tau * 2 * math.sqrt(2 + 1e-5) / (2 * 2 * 1)
    np.testing.assert_allclose(got, want, rtol=1e-12)


class ReferenceTest(absltest.TestCase):
  """Against float64 NumPy loop transcriptions and finite differences."""

  def test_soft_triple_with_tau_matches_numpy(self):
    rng = np.random.default_rng(7)
    k, la, gamma, margin, tau = 3, 6.0, 0.2, 0.05, 0.2
    x = rng.normal(size=(6, 4))
    labels = np.array([0, 1, 2, 2, 0, 1])
    proxies = rng.normal(size=(3 * k, 4))

    def ref(x, proxies):
      return _soft_triple_reference(
        x, labels, proxies, k, la, gamma, margin, tau
      )

    options = dict(centers_per_class=k, la=la, gamma=gamma, margin=margin)
    value, grad_x, grad_p = _ours(
      "soft_triple", dict(options, tau=tau), x, labels, proxies
    )
    np.testing.assert_allclose(value, ref(x, proxies), rtol=1e-12)
    _assert_relative(
      grad_x, references.numerical_grad(lambda v: ref(v, proxies), x), 1e-6
    )
    _assert_relative(
      grad_p, references.numerical_grad(lambda v: ref(x, v), proxies), 1e-6
    )

  def test_normalized_softmax_is_proxy_nca_softmax_and_cos_over_t(self):
    # The docstring's identity: -s |x - p|^2 = 2 s x.p - 2 s for unit
    # vectors, so temperature T is Proxy-NCA's softmax form at
    # s = 1 / (2 T); and both are the cross-entropy of cos / T.
    temperature = PML_DEFAULTS["normalized_softmax"]["temperature"]
    x, labels, proxies = _parity_case("random", 11, *GENERAL, 1)
    x, proxies = np.float32(x), np.float32(proxies)
    got = _ours(
      "normalized_softmax", {"temperature": temperature}, x, labels, proxies
    )
    proxy_nca = jax.jit(
      jax.value_and_grad(
        functools.partial(
          losses.proxy_nca_loss, form="softmax", scale=1 / (2 * temperature)
        ),
        argnums=(0, 2),
      )
    )(x, np.int32(labels), proxies)
    chex.assert_trees_all_close(
      got, (proxy_nca[0], *proxy_nca[1]), rtol=1e-6, atol=1e-6
    )

    def ref(x, proxies):
      return _normalized_softmax_reference(x, labels, proxies, temperature)

    np.testing.assert_allclose(got[0], ref(x, proxies), rtol=1e-5)
    _assert_relative(
      got[1], references.numerical_grad(lambda v: ref(v, proxies), x)
    )
    _assert_relative(
      got[2], references.numerical_grad(lambda v: ref(x, v), proxies)
    )


def _defaults(name):
  """PML's defaults in our names and units (the GENERAL cases' options)."""
  return _options(name, PML_DEFAULTS[name])


class PropertiesTest(parameterized.TestCase):
  @parameterized.parameters(*ARCFACE_LOSSES)
  def test_arcface_finite_at_cosine_plus_and_minus_one(self, name):
    # One sample equal to its class weight (cos = 1: target cos m), one
    # opposite it (cos = -1, past pi - m: -1 - m sin m); the other class
    # orthogonal (logit 0). d arccos / d cos is infinite at +-1: the
    # gradient must still be finite.
    s, m = 4.0, 0.5
    k = 2 if name == "subcenter_arcface" else 1
    options = {"margin": m, "scale": s}
    if k == 2:
      options["centers_per_class"] = 2
    proxies = np.repeat(_at(0, 90), k, axis=0)  # Tied sub-centres too.
    value, grad_x, grad_p = _ours(name, options, _at(0, 180), [0, 0], proxies)
    chex.assert_tree_all_finite((value, grad_x, grad_p))
    want = [
      math.log(1 + math.exp(-s * t))
      for t in (math.cos(m), -1 - m * math.sin(m))
    ]
    np.testing.assert_allclose(value, np.mean(want), rtol=1e-12)

  @parameterized.parameters(0.5, 1.5)
  def test_arcface_non_increasing_in_the_target_cosine(self, margin):
    # The class weight on e1, the other class on e3; the sample in the
    # e1-e2 plane at angle theta: its other logit is 0, so the loss is a
    # function of theta alone, and must not decrease as theta grows (the
    # target cosine falls), across theta = pi - m included.
    theta = np.sort(
      np.concatenate(
        [
          np.linspace(0, math.pi, 181),
          math.pi - margin + np.array([-1e-6, -1e-9, 0, 1e-9, 1e-6]),
        ]
      )
    )
    x = np.stack([np.cos(theta), np.sin(theta), 0 * theta], axis=-1)
    proxies = np.array([[1.0, 0, 0], [0, 0, 1.0]])
    per_sample = jax.jit(
      jax.vmap(
        lambda v: losses.arcface_loss(
          v[None], np.zeros(1, np.int32), proxies, margin=margin, scale=4.0
        )
      )
    )
    with jax.enable_x64(True):
      loss = np.asarray(per_sample(jnp.asarray(x, jnp.float64)))
    self.assertTrue(np.any(theta < math.pi - margin))
    self.assertTrue(np.any(theta > math.pi - margin))
    self.assertTrue(np.all(np.diff(loss) >= 0), np.diff(loss).min())
    self.assertGreater(loss[-1], loss[0])

  @parameterized.parameters(*PML_DEFAULTS)
  def test_zero_embeddings_give_finite_loss_and_gradients(self, name):
    # All zero, one zero row, and zero class weights.
    options = _defaults(name)
    x, labels, proxies = _parity_case("random", 12, *GENERAL, _k(options))
    x[0] = 0.0
    for args in ((x, proxies), (0 * x, proxies), (x, 0 * proxies)):
      got = _ours(name, options, args[0], labels, args[1])
      chex.assert_tree_all_finite(got)


class BadOptionsTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("temperature", "normalized_softmax", {"temperature": 0.0}, "temperature"),
    ("cosface_scale", "cosface", {"scale": -1.0}, "scale must be positive"),
    ("cosface_margin", "cosface", {"margin": -0.1}, "cosine margin must be"),
    ("arcface_scale", "arcface", {"scale": -64.0}, "scale must be positive"),
    ("arcface_pi", "arcface", {"margin": math.pi}, r"radians .* \[0, pi\)"),
    ("arcface_degrees", "arcface", {"margin": 28.6}, "28.6 is degrees"),
    ("arcface_negative", "arcface", {"margin": -0.1}, r"\[0, pi\)"),
    (
      "subcenter_pi",
      "subcenter_arcface",
      {"margin": 4.0, "centers_per_class": 1},
      r"\[0, pi\)",
    ),
    (
      "subcenter_rows",
      "subcenter_arcface",
      {"centers_per_class": 2},
      "9 proxy rows are not 2 centres",
    ),
    (
      "subcenter_zero_k",
      "subcenter_arcface",
      {"centers_per_class": 0},
      "centers_per_class must be a positive integer",
    ),
    (
      "soft_triple_rows",
      "soft_triple",
      {"centers_per_class": 2},
      "9 proxy rows are not 2 centres",
    ),
    (
      "soft_triple_float_k",
      "soft_triple",
      {"centers_per_class": 3.0},
      "positive integer, got 3.0",
    ),
    ("soft_triple_la", "soft_triple", {"la": 0.0}, "scale must be positive"),
    ("soft_triple_gamma", "soft_triple", {"gamma": 0.0}, "gamma must be"),
    ("soft_triple_tau", "soft_triple", {"tau": -0.1}, "tau must be >= 0"),
  )
  def test_bad_option_raises(self, name, options, message):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 0])
    proxies = rng.normal(size=(9, 3)).astype(np.float32)  # 3 classes x 3.
    if name in ("subcenter_arcface", "soft_triple"):
      options = {"centers_per_class": 3, **options}
    with self.assertRaisesRegex(ValueError, message):
      getattr(losses, f"{name}_loss")(x, labels, proxies, **options)

  @parameterized.parameters(
    ("normalized_softmax", 1),
    ("cosface", 1),
    ("arcface", 1),
    ("subcenter_arcface", 3),
    ("soft_triple", 3),
  )
  def test_concrete_labels_outside_the_classes_are_named(self, name, k):
    # 3 classes of K rows: label 3 is outside [0, 3) even where it is a
    # proxy row (K = 3: rows 0..8).
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 3)).astype(np.float32)
    proxies = rng.normal(size=(3 * k, 3)).astype(np.float32)
    options = {"centers_per_class": k} if k > 1 else {}
    fn = getattr(losses, f"{name}_loss")
    for labels in ([0, 1, 2, 3, 0], [0, -1, 2, 1, 0]):
      bad = 3 if 3 in labels else -1
      with self.assertRaisesRegex(
        ValueError, rf"labels {bad} are not proxy rows \[0, 3\)"
      ):
        fn(x, np.array(labels), proxies, **options)


if __name__ == "__main__":
  absltest.main()
