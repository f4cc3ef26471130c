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
"""Tests of durations.py: the one format of ETAs, values worked out by hand."""

from absl.testing import absltest, parameterized

from proxy_nca_jax import durations


class FormatDurationTest(parameterized.TestCase):
  @parameterized.parameters(
    (0.0, "0s"),
    (42.0, "42s"),
    (59.4, "59s"),  # Rounds to 59 s.
    (59.6, "1m00s"),  # Rounds to 60 s: a minute.
    (185.0, "3m05s"),  # 3 * 60 + 5.
    (3599.0, "59m59s"),
    (3600.0, "1h00m"),
    (3 * 3600 + 7 * 60 + 59.0, "3h07m"),  # The seconds are dropped.
    (36_000.0, "10h00m"),  # The trainer once printed 600m00s.
    (100 * 3600 + 60.0, "100h01m"),
  )
  def test_format(self, seconds, expected):
    self.assertEqual(durations.format_duration(seconds), expected)

  @parameterized.parameters(float("nan"), float("inf"))
  def test_unknown_duration_is_a_question_mark(self, seconds):
    self.assertEqual(durations.format_duration(seconds), "?")


if __name__ == "__main__":
  absltest.main()
