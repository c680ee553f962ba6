"""Backends: one module per framework behind the small interface in :mod:`sonic.backends.base`."""

from sonic.backends.base import (
    BackendRequest,
    InstanceSpec,
    LoadContext,
    ModelInstance,
    Timing,
    backend_class,
    backend_name,
    merge_inputs,
    register,
    split_outputs,
)

__all__ = [
    "BackendRequest",
    "InstanceSpec",
    "LoadContext",
    "ModelInstance",
    "Timing",
    "backend_class",
    "backend_name",
    "merge_inputs",
    "register",
    "split_outputs",
]
