"""The Triton model repository: layout, versions, and model configurations.

A model directory becomes a validated, auto-completed ``inference.ModelConfig``
(:func:`load_model_config`); :class:`ModelRepository` lists the model directories of one or
more repository paths and fingerprints them for poll mode; :func:`select_versions` applies a
version policy. Model control (none / poll / explicit) and loading live in the server.
"""

from sonic.repository.config import (
    DEFAULT_MAX_BATCH_SIZE,
    ModelConfig,
    autocomplete,
    config_from_json,
    load_model_config,
    parse_config,
    validate,
)
from sonic.repository.layout import Fingerprint, ModelRepository, select_versions, versions_on_disk

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "Fingerprint",
    "ModelConfig",
    "ModelRepository",
    "autocomplete",
    "config_from_json",
    "load_model_config",
    "parse_config",
    "select_versions",
    "validate",
    "versions_on_disk",
]
