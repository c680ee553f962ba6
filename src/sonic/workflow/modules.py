"""Ready-made modules, usable from YAML without writing code.

- :class:`Infer` — a SONIC module mapping event columns (or products) to model inputs and
  model outputs to products: ``module: sonic.workflow.modules:Infer`` with
  ``params: {inputs: {input: jet}, outputs: {output: score}}``. Inputs are cast to the model's
  datatypes; a jagged column (one row per object) is a batch of its objects, so an event with
  no object makes no request.
- :class:`Busy` — burns a fixed CPU time per event (benchmarks, demos).
- :class:`Copy` — copies columns to products under other names (a plain module, mostly for
  tests and wiring).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sonic.client import ClientConfig, InferResult
from sonic.protocol.datatypes import numpy_dtype
from sonic.protocol.errors import InvalidArgument
from sonic.workflow._event import Event
from sonic.workflow._modules import Module, SonicModule, module_name

__all__ = ["Busy", "Copy", "Infer"]


class Infer(SonicModule):
    """Columns -> model inputs -> products.

    ``inputs``: model input name -> event column or product. ``outputs``: model output name ->
    product name (default: every output under its own name). ``fixed``: products to store as
    fixed-shape columns (default: outputs of a model without batching, or with
    ``per_event=True``). ``per_event``: add a batch dimension of 1 to each input and drop it
    from the outputs (one sample per event instead of one per object).
    """

    def __init__(
        self,
        inputs: Mapping[str, str],
        outputs: Mapping[str, str] | None = None,
        *,
        per_event: bool = False,
        fixed: Sequence[str] = (),
        name: str = "",
        client: str | ClientConfig | Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(inputs, Mapping) or not inputs:
            raise InvalidArgument("Infer: 'inputs' must map model input names to event columns")
        if outputs is not None and not isinstance(outputs, Mapping):
            raise InvalidArgument("Infer: 'outputs' must map model output names to product names")
        self.inputs = dict(inputs)
        self.outputs = dict(outputs) if outputs is not None else None
        self.per_event = bool(per_event)
        self.fixed = set(fixed)
        self.name = name
        self.client = client
        self._dtypes: dict[str, np.dtype[Any]] = {}

    def begin(self) -> None:
        info = self.model_info
        if info is None:
            return
        for name in self.inputs:
            spec = info.inputs.get(name)
            if spec is None:
                from sonic.protocol.errors import nearest

                raise InvalidArgument(
                    f"{module_name(self)}: model '{info.name}' has no input '{name}'; it has "
                    f"{sorted(info.inputs)}" + nearest(name, list(info.inputs))
                )
            if spec.datatype != "BYTES":
                self._dtypes[name] = np.dtype(numpy_dtype(spec.datatype))
        if self.outputs is None:
            self.outputs = {o: o for o in info.outputs}
        if not info.batched or self.per_event:
            self.fixed.update(self.outputs.values())

    def acquire(self, event: Event) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for model_input, column in self.inputs.items():
            arr = np.asarray(event[column])
            dt = self._dtypes.get(model_input)
            if dt is not None and arr.dtype != dt:
                arr = arr.astype(dt)
            out[model_input] = arr[np.newaxis] if self.per_event else arr
        return out

    def produce(self, event: Event, result: InferResult | list[InferResult] | None) -> None:
        assert isinstance(result, InferResult)
        outputs = self.outputs if self.outputs is not None else {o: o for o in result}
        for model_output, product in outputs.items():
            value = result[model_output]
            if self.per_event:
                value = value[0]
            event.put(product, value, fixed=product in self.fixed)


class Busy(Module):
    """Spin the CPU for ``ms`` milliseconds per event (a stand-in for reconstruction work)."""

    def __init__(self, ms: float = 1.0, *, name: str = "") -> None:
        self.ms = float(ms)
        self.name = name

    def produce(self, event: Event) -> None:
        end = time.perf_counter() + self.ms / 1e3
        while time.perf_counter() < end:
            pass


class Copy(Module):
    """Put ``columns`` (source column or product -> new product name) on each event."""

    def __init__(self, columns: Mapping[str, str], *, name: str = "") -> None:
        self.columns = dict(columns)
        self.name = name

    def produce(self, event: Event) -> None:
        for src, dst in self.columns.items():
            event[dst] = event[src]
