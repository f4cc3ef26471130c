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
"""The paper's research questions, one runnable module each.

``python -m research.rqN_... --out=docs/rqN`` trains the runs
it needs through ``trainer.train_and_evaluate`` (workdirs under
``--workdir_root``; a finished workdir is reused, not retrained), then writes
``results.md`` (tables) and a PNG figure into ``--out``. ``common`` holds
what the modules share.
"""
