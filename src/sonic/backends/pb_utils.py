"""``triton_python_backend_utils`` for sonic: run Triton python-backend models unchanged.

A user's ``model.py`` written for NVIDIA Triton imports ``triton_python_backend_utils as
pb_utils``. The python backend puts this module in ``sys.modules`` under that name before it
imports the model file, so the same model directory serves on Triton and on sonic. It covers
the part of the API that non-decoupled models use: tensors, requests, responses, errors,
config look-ups and the logger.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from sonic.protocol.datatypes import config_to_v2, numpy_dtype

_log = logging.getLogger("sonic.python_model")

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2


class Tensor:
    def __init__(self, name: str, array: npt.NDArray[Any]) -> None:
        self._name = name
        self._array = np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> npt.NDArray[Any]:
        return self._array

    def shape(self) -> list[int]:
        return list(self._array.shape)

    def is_cpu(self) -> bool:
        return True

    def to_dlpack(self) -> Any:
        return self._array.__dlpack__()

    @staticmethod
    def from_dlpack(name: str, capsule: Any) -> Tensor:
        return Tensor(name, np.from_dlpack(capsule))


class TritonError(Exception):
    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, message: str, code: int = INTERNAL) -> None:
        super().__init__(message)
        self._message = message
        self._code = code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class InferenceRequest:
    """One request as ``execute`` receives it."""

    def __init__(
        self,
        inputs: list[Tensor],
        requested_output_names: list[str],
        request_id: str = "",
        parameters: dict[str, Any] | None = None,
        correlation_id: int = 0,
        flags: int = 0,
    ) -> None:
        self._inputs = inputs
        self._requested = requested_output_names
        self._id = request_id
        self._parameters = parameters or {}
        self._correlation_id = correlation_id
        self._flags = flags

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def requested_output_names(self) -> list[str]:
        return self._requested

    def request_id(self) -> str:
        return self._id

    def correlation_id(self) -> int:
        return self._correlation_id

    def flags(self) -> int:
        return self._flags

    def parameters(self) -> str:
        return json.dumps(self._parameters)

    def is_cancelled(self) -> bool:
        return False

    def timeout(self) -> int:
        return int(self._parameters.get("timeout", 0))


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor] | None = None, error: TritonError | None = None) -> None:
        self._outputs = list(output_tensors or [])
        self._error = error

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    for t in request.inputs():
        if t.name() == name:
            return t
    return None


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    for t in response.output_tensors():
        if t.name() == name:
            return t
    return None


def _by_name(config: dict[str, Any], key: str, name: str) -> dict[str, Any] | None:
    for item in config.get(key, []):
        if item.get("name") == name:
            return dict(item)
    return None


def get_input_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    return _by_name(model_config, "input", name)


def get_output_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    return _by_name(model_config, "output", name)


def triton_string_to_numpy(type_string: str) -> Any:
    return numpy_dtype(config_to_v2(type_string)).type


class Logger:
    @staticmethod
    def log_info(msg: str) -> None:
        _log.info(msg)

    @staticmethod
    def log_warn(msg: str) -> None:
        _log.warning(msg)

    @staticmethod
    def log_error(msg: str) -> None:
        _log.error(msg)

    @staticmethod
    def log_verbose(msg: str) -> None:
        _log.debug(msg)

    @staticmethod
    def log(msg: str, level: int = 0) -> None:
        _log.info(msg)
