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
"""Reports of trained runs: metrics files, tables and figures.

- ``workdir_report``: ``evaluate_workdir``, the evaluation files of a
  training run written into its workdir (the evaluate command, and the
  train command at its end);
- ``figures``: the retrieval grid, the 2-D projection and the convergence
  plot, drawn with matplotlib.

Reports sit above ``training``, which never imports them.
"""
