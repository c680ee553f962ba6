"""hls4ml backend: an FPGA design served like any model (FPGA as a service).

A model directory written by ``sonic fpga convert -o REPO/NAME`` holds the HLS project in
``<version>/hls4ml_prj`` with its compiled bit-accurate C simulation and ``sonic_fpga.json``
(see :mod:`sonic.fpga.repository`). Each instance opens the device the config names
(``parameters { key: "device" value: { string_value: "emulation" | "xrt" } }``, default
``emulation``; ``xclbin`` names the bitstream for ``xrt``) and runs merged batches through it:
the scheduler's dynamic batching, the statistics, the metrics and both protocols are the
server's, unchanged. Loading needs neither hls4ml nor a framework: the library is loaded with
ctypes, and rebuilt with g++ into a private directory only when the repository was moved.

Each sample is one call of the C simulation (as hls4ml's own predict does); ctypes releases
the GIL during the call, so instances run in parallel threads. Results are bit-identical to
``hls4ml.model.ModelGraph.predict`` on the same float32 inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sonic.backends.base import (
    BackendRequest,
    LoadContext,
    ModelInstance,
    Result,
    Timing,
    check_outputs,
    merge_inputs,
    now_ns,
    register,
    split_outputs,
)
from sonic.fpga.device import open_device
from sonic.fpga.repository import PROJECT_DIR
from sonic.protocol.errors import Internal, InvalidArgument, SonicError, nearest


@register("hls4ml")
class Hls4mlInstance(ModelInstance):
    def __init__(self, ctx: LoadContext) -> None:
        super().__init__(ctx)
        project = ctx.model_file(PROJECT_DIR)
        kind = ctx.parameter("device", "emulation") or "emulation"
        self.device = open_device(
            kind, project, xclbin=ctx.parameter("xclbin") or None, index=ctx.instance.device_id
        )
        meta = self.device.meta
        self._inputs = [t.name for t in meta.inputs]
        self._shapes = {t.name: t.shape for t in meta.inputs}
        self._outputs = [t.name for t in meta.outputs]
        for t in ctx.config.input:
            if t.name not in self._shapes:
                raise InvalidArgument(
                    f"model '{ctx.model_name}': config input '{t.name}' is not an input of the design in "
                    f"{project}" + nearest(t.name, self._inputs)
                )
        for t in ctx.config.output:
            if t.name not in self._outputs:
                raise InvalidArgument(
                    f"model '{ctx.model_name}': config output '{t.name}' is not an output of the design in "
                    f"{project}" + nearest(t.name, self._outputs)
                )
        self._batched = ctx.config.max_batch_size > 0

    def execute(self, requests: Sequence[BackendRequest], timing: Timing) -> list[Result]:
        t0 = now_ns()
        merged = merge_inputs(requests)
        batch = sum(r.batch_size for r in requests)
        arrays = []
        for name in self._inputs:
            x = merged[name]
            if not self._batched:
                x = x[np.newaxis]
            arrays.append(x.reshape(len(x), *self._shapes[name]) if x.size else x)
        t1 = now_ns()
        try:
            values = self.device.run(arrays)
        except SonicError:
            raise
        except Exception as exc:
            raise Internal(f"hls4ml execution failed for model '{self.ctx.model_name}': {exc}") from exc
        t2 = now_ns()
        outputs = dict(zip(self._outputs, values, strict=True))
        if not self._batched:
            outputs = {k: v[0] for k, v in outputs.items()}
        check_outputs(self.ctx.model_name, outputs, batch, self._batched)
        results = split_outputs(outputs, requests)
        timing.input_ns, timing.infer_ns, timing.output_ns = t1 - t0, t2 - t1, now_ns() - t2
        return results

    def close(self) -> None:
        self.device.close()
