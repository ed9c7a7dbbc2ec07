# Copyright 2024 The HuggingFace Team. All rights reserved.
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
#
#
# Vendored from huggingface/diffusers, commit 58eb52c0803ea9af3abec60841c2a093bdf1f951, file tests/pipelines/testing_utils/__init__.py.
# Changes: see tests/diffusers_compat/README.md (only the common and memory mixins are vendored).
from .common import BasePipelineTesterConfig, PipelineTesterMixin
from .memory import (
    GroupOffloadTesterMixin,
    LayerwiseCastingTesterMixin,
    MemoryTesterMixin,
    PipelineOffloadTesterMixin,
)


__all__ = [
    "BasePipelineTesterConfig",
    "PipelineTesterMixin",
    "MemoryTesterMixin",
    "PipelineOffloadTesterMixin",
    "GroupOffloadTesterMixin",
    "LayerwiseCastingTesterMixin",
]
