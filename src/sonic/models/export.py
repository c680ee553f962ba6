"""Export the reference networks to ONNX and TorchScript, and check both against PyTorch.

Where this sits: the onnxruntime backend serves the ONNX file, a libtorch (Triton
``pytorch``) backend the TorchScript file; :func:`check_exports` is the numerical contract
between them and the PyTorch model (max |Δ| ≤ 1e-5 on the outputs, in the network's own
units — for DeepClean the output divided by its 1e-21 scale).

ONNX goes through PyTorch's ``torch.export``-based exporter (the default since 2.9; it needs
``onnxscript``), opset 18, with a dynamic ``batch`` dimension (and a dynamic ``time`` = 16·k
for DeepClean). TorchScript is deprecated upstream but is still what libtorch-based servers
load; its DeprecationWarning is silenced here, and only here.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sonic.models.nets import DeepClean, JetMLP, ParticleTagger, PatchCNN

__all__ = ["SPECS", "check_exports", "example_inputs", "export_onnx", "export_torchscript"]

#: model name -> (class, input names, output names)
SPECS: dict[str, tuple[type[nn.Module], tuple[str, ...], tuple[str, ...]]] = {
    "jets_mlp": (JetMLP, ("input",), ("output",)),
    "jets_particle": (ParticleTagger, ("pf_features", "pf_mask"), ("output",)),
    "lartpc_cnn": (PatchCNN, ("input",), ("output",)),
    "deepclean": (DeepClean, ("witness",), ("noise",)),
}


def _kind(model: nn.Module) -> str:
    for name, (cls, _, _) in SPECS.items():
        if isinstance(model, cls):
            return name
    raise TypeError(f"not a sonic reference model: {type(model).__name__}")


def example_inputs(model: nn.Module, batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the right shapes and magnitudes for ``model``."""
    g = torch.Generator().manual_seed(seed)
    kind = _kind(model)
    if kind == "jets_mlp":
        return (torch.rand(batch, 16, generator=g) * 50.0,)
    if kind == "jets_particle":
        feats = torch.randn(batch, 50, 10, generator=g)
        mask = (torch.arange(50)[None, :] < torch.randint(1, 51, (batch, 1), generator=g)).float()
        return (feats * mask[..., None], mask)
    if kind == "lartpc_cnn":
        return (torch.randn(batch, 1, 48, 48, generator=g) * 10.0,)
    return (torch.randn(batch, 3, 1024, generator=g),)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs its progress and a few known-harmless warnings; keep them down."""
    names = ["torch.onnx", "torch.export", "torch._export", "onnxscript"]
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # torch.export's pytree still uses LeafSpec internally (torch 2.13): not our code.
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            # two inputs sharing the ``batch`` axis: the exporter names it once, and says so.
            warnings.filterwarnings(
                "ignore", message=r".*shares the same shape constraints", category=UserWarning
            )
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def export_onnx(model: nn.Module, path: str | Path, opset: int = 18) -> Path:
    """Write ``model`` (eval mode) as ONNX with a dynamic batch (and time for DeepClean)."""
    path = Path(path)
    kind = _kind(model)
    _, inputs, outputs = SPECS[kind]
    model = model.eval()
    args = example_inputs(model)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    shapes: dict[str, dict[int, Any]]
    if kind == "deepclean":
        t16 = torch.export.Dim("t16", min=1, max=1 << 16)
        shapes = {"witness": {0: batch, 2: 16 * t16}}
    elif kind == "jets_particle":
        shapes = {"pf_features": {0: batch}, "pf_mask": {0: batch}}
    else:
        shapes = {"x": {0: batch}}
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(
            model,
            args,
            str(path),
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_shapes=shapes,
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    return path


@contextlib.contextmanager
def _jit_quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        # TorchScript is deprecated in torch >= 2.10 but libtorch servers still load it.
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        yield


def export_torchscript(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` (eval mode) as a scripted TorchScript module."""
    path = Path(path)
    with _jit_quiet():
        scripted = torch.jit.script(model.eval())
        torch.jit.save(scripted, str(path))
    return path


def load_torchscript(path: str | Path) -> Any:
    with _jit_quiet():
        return torch.jit.load(str(path))  # type: ignore[no-untyped-call]


def check_exports(
    model: nn.Module, onnx_path: str | Path | None, ts_path: str | Path | None, batch: int = 7, seed: int = 1
) -> dict[str, float]:
    """Max |Δ| between PyTorch and each export on fresh random inputs (network units)."""
    model = model.eval()
    kind = _kind(model)
    _, inputs, _ = SPECS[kind]
    args = example_inputs(model, batch=batch, seed=seed)
    unit = float(model.out_scale) if isinstance(model, DeepClean) else 1.0
    with torch.no_grad():
        ref = model(*args).numpy() / unit
    out: dict[str, float] = {}
    if onnx_path is not None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        got = sess.run(None, {n: a.numpy() for n, a in zip(inputs, args, strict=True)})[0]
        out["onnx"] = float(np.max(np.abs(np.asarray(got) / unit - ref)))
    if ts_path is not None:
        ts = load_torchscript(ts_path)
        with torch.no_grad():
            got_ts = ts(*args).numpy()
        out["torchscript"] = float(np.max(np.abs(got_ts / unit - ref)))
    return out
