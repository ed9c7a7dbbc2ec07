"""Moved to `pipelines.evaluation.real` (the real-preset suites, side by side with the micro ones in
`pipelines.evaluation.micro`). This name stays for old imports; patch names in `pipelines.evaluation.real`."""
from __future__ import annotations

from .evaluation.real import (AUDIO_CASES, AUDIO_SAMPLE_RATE, REAL_PRIMARY, REAL_SUITES, SKIPPED_SUITES, STYLE_CASES,
                              STYLE_PATTERNS, T2V_PROMPTS, VIDEO_SUFFIXES, add_fvd, check_ready, check_suites,
                              describe_config, impact_audio, measure, metrics_config_for, read_video, real_cases,
                              style_reference)

__all__ = ["AUDIO_CASES", "AUDIO_SAMPLE_RATE", "REAL_PRIMARY", "REAL_SUITES", "SKIPPED_SUITES", "STYLE_CASES",
           "STYLE_PATTERNS", "T2V_PROMPTS", "VIDEO_SUFFIXES", "add_fvd", "check_ready", "check_suites",
           "describe_config", "impact_audio", "measure", "metrics_config_for", "read_video", "real_cases",
           "style_reference"]
