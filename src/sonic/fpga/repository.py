"""A converted design as a Triton model-repository entry that ``sonic serve`` loads.

Layout written by :func:`write_model_entry` (and by ``sonic fpga convert -o REPO/NAME``)::

    REPO/NAME/config.pbtxt              backend: "hls4ml", FP32 tensors named as the float model's
    REPO/NAME/1/hls4ml_prj/             the HLS project (vendor synthesis starts here)
    REPO/NAME/1/hls4ml_prj/sonic_fpga.json      what the backend needs to load the emulation
    REPO/NAME/1/hls4ml_prj/firmware/*.so        the compiled bit-accurate C simulation

The tensors keep the float model's names and shapes, so a workflow switches between the float
model and the FPGA design by the model name alone. ``parameters { key: "device" }`` selects
where the design runs: ``emulation`` (the C simulation, here) or ``xrt`` (a Xilinx card through
XRT, see :mod:`sonic.fpga.device`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sonic.fpga.emulation import ProjectMeta, build_library, read_meta, relocate_sources, write_meta
from sonic.protocol.errors import InvalidArgument

__all__ = ["PROJECT_DIR", "config_text", "write_model_entry"]

#: The project's folder inside a version directory (the backend's "model file").
PROJECT_DIR = "hls4ml_prj"


def _tensors(key: str, tensors: list[tuple[str, tuple[int, ...]]]) -> list[str]:
    lines = [f"{key} ["]
    for i, (name, dims) in enumerate(tensors):
        sep = "," if i < len(tensors) - 1 else ""
        lines.append(
            f'  {{ name: "{name}" data_type: TYPE_FP32 dims: [ {", ".join(map(str, dims))} ] }}{sep}'
        )
    return [*lines, "]"]


def config_text(
    name: str,
    meta: ProjectMeta,
    *,
    max_batch_size: int = 64,
    instances: int = 1,
    max_queue_delay_us: int = 100,
    device: str = "emulation",
) -> str:
    """The config.pbtxt of a design: its tensors, batching, one CPU instance group, parameters."""
    cfg = meta.info.get("config", {})
    lines = [
        f'name: "{name}"',
        'backend: "hls4ml"',
        f"max_batch_size: {max_batch_size}",
        *_tensors("input", [(t.name, t.shape) for t in meta.inputs]),
        *_tensors("output", [(t.name, t.shape) for t in meta.outputs]),
    ]
    if max_batch_size > 0:
        lines += ["dynamic_batching {", f"  max_queue_delay_microseconds: {max_queue_delay_us}", "}"]
    lines += [f"instance_group [ {{ count: {instances} kind: KIND_CPU }} ]"]
    params = {
        "device": device,
        # informational: what the design is (shown by the model-config endpoint)
        "hls4ml_backend": meta.backend,
        "precision": str(cfg.get("precision", "")),
        "reuse_factor": str(cfg.get("reuse_factor", "")),
        "io_type": meta.io_type,
        "clock_period_ns": str(cfg.get("clock_period", "")),
    }
    for key, value in params.items():
        lines.append(f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}')
    return "\n".join(lines) + "\n"


def write_model_entry(
    project_dir: Path,
    model_dir: Path,
    *,
    version: int = 1,
    max_batch_size: int = 64,
    instances: int = 1,
    max_queue_delay_us: int = 100,
    device: str = "emulation",
) -> Path:
    """Make ``model_dir`` (REPO/NAME) serve the converted project ``project_dir``.

    A project elsewhere is copied into ``model_dir/<version>/hls4ml_prj`` and its library
    rebuilt there (the C simulation compiles in the path of its weights). A project already in
    place (what ``sonic fpga convert -o`` makes) is left as it is. Returns ``model_dir``.
    """
    if device not in ("emulation", "xrt"):
        raise InvalidArgument(f"device {device!r}; expected 'emulation' or 'xrt'")
    project_dir = Path(project_dir).resolve()
    model_dir = Path(model_dir).resolve()
    target = model_dir / str(version) / PROJECT_DIR
    meta = read_meta(project_dir)
    if project_dir != target:
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(project_dir, target, ignore=shutil.ignore_patterns("*.so", "*.o", "*_prj"))
        relocate_sources(target)
        library = build_library(target)
        meta.library = str(library.relative_to(target))
        meta.built_in = str(target)
        write_meta(target, meta)
    (model_dir / "config.pbtxt").write_text(
        config_text(
            model_dir.name,
            meta,
            max_batch_size=max_batch_size,
            instances=instances,
            max_queue_delay_us=max_queue_delay_us,
            device=device,
        )
    )
    return model_dir
