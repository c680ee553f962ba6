"""Where a design runs: the bit-accurate emulation here, or an FPGA card through XRT.

Where this sits: the hls4ml server backend (:mod:`sonic.backends.hls4ml`) asks
:func:`open_device` for the device its model config names (``parameters { key: "device" }``)
and then only calls :meth:`Device.run` with merged batches, so the serving path is the same for
the C simulation and for a card: the FaaST idea (FPGA as a service) for any hls4ml design.

- ``emulation``: :class:`EmulationDevice`, the compiled C simulation (bit-accurate to the HLS
  source, not cycle-accurate).
- ``xrt``: :class:`XrtDevice`, a Xilinx/AMD Alveo card programmed with an ``.xclbin`` built
  from the project (hls4ml's VitisAccelerator flow), driven through XRT's Python bindings
  (``pyxrt``). Without XRT or without a card it fails at load with :class:`NoDevice`, which
  says what is missing and how to serve the design anyway. The transfer code follows XRT's
  documented buffer-object API; it has not been run against a card from this repository.
"""

from __future__ import annotations

import glob
import importlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from sonic.fpga.emulation import EmulationLibrary, ProjectMeta, read_meta
from sonic.protocol.errors import InvalidArgument, NotFound, Unavailable, nearest

__all__ = ["DEVICES", "Device", "EmulationDevice", "NoDevice", "XrtDevice", "open_device"]

Array = npt.NDArray[Any]
DEVICES = ("emulation", "xrt")


class NoDevice(Unavailable):
    """No FPGA card (or no driver stack for one) where the model config asked for one."""


class Device(Protocol):
    meta: ProjectMeta

    @property
    def kind(self) -> str: ...

    def run(self, inputs: list[Array]) -> list[Array]:
        """One merged batch in (one array per input, batch first), one array per output."""
        ...

    def close(self) -> None: ...


class EmulationDevice:
    """The compiled C simulation of the project (see :mod:`sonic.fpga.emulation`)."""

    kind = "emulation"

    def __init__(self, project_dir: Path) -> None:
        self.library = EmulationLibrary.open(project_dir)
        self.meta = self.library.meta

    def run(self, inputs: list[Array]) -> list[Array]:
        dtype = np.float64 if inputs and inputs[0].dtype == np.float64 else np.float32
        return self.library.predict(inputs, dtype=dtype)

    def close(self) -> None:
        self.library.close()


def _xrt_cards() -> list[str]:
    return sorted(glob.glob("/dev/xclmgmt*") + glob.glob("/dev/xfpga/*"))


class XrtDevice:
    """An Alveo card through XRT, running the project's accelerator kernel (``.xclbin``)."""

    kind = "xrt"

    def __init__(self, project_dir: Path, *, xclbin: str | None = None, index: int = 0) -> None:
        self.meta = read_meta(project_dir)
        try:
            pyxrt = importlib.import_module("pyxrt")
        except ImportError:
            cards = _xrt_cards()
            seen = (
                f" (cards: {', '.join(cards)})" if cards else " and no Xilinx card is visible (/dev/xclmgmt*)"
            )
            raise NoDevice(
                "no FPGA device: the model config asks for device 'xrt', but XRT's Python bindings (pyxrt) "
                f"are not installed here{seen}. Serve the design with "
                'parameters { key: "device" value: { string_value: "emulation" } } (the bit-accurate C '
                "simulation), or on a host with an Alveo card and XRT (source /opt/xilinx/xrt/setup.sh)"
            ) from None
        count = int(pyxrt.enumerate_devices()) if hasattr(pyxrt, "enumerate_devices") else 0
        if count <= index:
            raise NoDevice(
                f"no FPGA device: XRT is installed but sees {count} card(s); device index {index} was "
                "asked for. Use device 'emulation' on this host"
            )
        path = Path(xclbin) if xclbin else next(iter(sorted(Path(project_dir).rglob("*.xclbin"))), None)
        if path is None or not path.is_file():
            raise NotFound(
                f"no .xclbin for {project_dir}: build the accelerator with hls4ml's VitisAccelerator backend "
                '(vendor tools needed) and name it with parameters { key: "xclbin" ... }'
            )
        self._pyxrt = pyxrt
        self._device = pyxrt.device(index)
        uuid = self._device.load_xclbin(str(path))
        self._kernel = pyxrt.kernel(
            self._device, uuid, self.meta.project_name, pyxrt.kernel.cu_access_mode.shared
        )

    def run(self, inputs: list[Array]) -> list[Array]:
        pyxrt = self._pyxrt
        n = len(inputs[0])
        bos = []
        for i, x in enumerate(inputs):
            data = np.ascontiguousarray(x, dtype=np.float32)
            bo = pyxrt.bo(self._device, data.nbytes, pyxrt.bo.normal, self._kernel.group_id(i))
            bo.write(data.tobytes(), 0)
            bo.sync(pyxrt.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE)
            bos.append(bo)
        outs = []
        for j, spec in enumerate(self.meta.outputs):
            nbytes = n * spec.size * 4
            outs.append(
                pyxrt.bo(self._device, nbytes, pyxrt.bo.normal, self._kernel.group_id(len(inputs) + j))
            )
        run = self._kernel(*bos, *outs, n)
        run.wait()
        results = []
        for bo, spec in zip(outs, self.meta.outputs, strict=True):
            bo.sync(pyxrt.xclBOSyncDirection.XCL_BO_SYNC_BO_FROM_DEVICE)
            raw = bytes(bo.read(n * spec.size * 4, 0))
            results.append(np.frombuffer(raw, dtype=np.float32).reshape(n, *spec.shape).copy())
        return results

    def close(self) -> None:
        self._kernel = None


def open_device(kind: str, project_dir: Path, *, xclbin: str | None = None, index: int = 0) -> Device:
    """The device a model config names; :class:`NoDevice` when it is not on this host."""
    if kind == "emulation":
        return EmulationDevice(project_dir)
    if kind == "xrt":
        return XrtDevice(project_dir, xclbin=xclbin, index=index)
    raise InvalidArgument(f"unknown FPGA device {kind!r}" + nearest(kind, DEVICES))
