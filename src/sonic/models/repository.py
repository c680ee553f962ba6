"""The shipped reference models as a Triton-layout model repository, for sonic or NVIDIA Triton.

Two flavours of the same ONNX file, so that every workflow can run the same network in-process,
on ``sonic serve`` and on NVIDIA's Triton and be compared output for output:

- ``backend="onnxruntime"``: ``<name>/1/model.onnx`` and a ``config.pbtxt`` with inputs and
  outputs read from the file (what ``sonic serve`` and the ``local`` transport load);
- ``backend="python"``: the same ``model.onnx`` next to a Triton python-backend ``model.py``
  that runs it with onnxruntime (the only way the CPU reference build of Triton runs ONNX).

Needs the ``onnx`` package (``sonic[onnx]``) to read the inputs and outputs; not torch.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from google.protobuf import text_format  # type: ignore[import-untyped, unused-ignore]
from tritonclient.grpc.model_config_pb2 import ModelConfig

from sonic.models import MODEL_NAMES, weights_path
from sonic.protocol.errors import InvalidArgument
from sonic.repository.config import autocomplete

__all__ = ["BACKENDS", "DEFAULT_MAX_BATCH_SIZE", "write_repository"]

BACKENDS = ("onnxruntime", "python")

#: max_batch_size per model: a ProtoDUNE-like event has a few hundred patches, a jet event a
#: handful of jets, a DeepClean frame is one sequence per request.
DEFAULT_MAX_BATCH_SIZE = {"jets_mlp": 256, "jets_particle": 256, "lartpc_cnn": 256, "deepclean": 16}


def write_repository(
    dest: Path,
    names: Iterable[str] = MODEL_NAMES,
    *,
    backend: str = "onnxruntime",
    max_batch_size: int | None = None,
    max_queue_delay_us: int = 100,
    instances: int = 1,
    intra_op_threads: int = 1,
) -> Path:
    """Write the shipped models ``names`` under ``dest`` (Triton layout); returns ``dest``.

    ``max_batch_size=None`` takes :data:`DEFAULT_MAX_BATCH_SIZE`. Every model gets dynamic
    batching with ``max_queue_delay_us``, ``instances`` CPU instances and onnxruntime's
    thread count set to ``intra_op_threads`` (``intra_op_thread_count`` as Triton's onnxruntime
    backend spells it; ``intra_op_num_threads`` for the python model). Other models in ``dest``
    are left alone.
    """
    if backend not in BACKENDS:
        raise InvalidArgument(f"backend must be one of {BACKENDS}, got {backend!r}")
    from sonic.zoo import ORT_MODEL_PY

    dest = Path(dest)
    for name in names:
        version = dest / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(weights_path(name), version / "model.onnx")
        config = ModelConfig(name=name, backend="onnxruntime")
        config.max_batch_size = max_batch_size or DEFAULT_MAX_BATCH_SIZE[name]
        config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
        group = config.instance_group.add()
        group.count = instances
        group.kind = group.KIND_CPU
        config = autocomplete(config, version)
        if backend == "python":
            config.backend = "python"
            config.ClearField("platform")
            config.ClearField("default_model_filename")
            config.parameters["intra_op_num_threads"].string_value = str(intra_op_threads)
            (version / "model.py").write_text(ORT_MODEL_PY)
        else:
            config.parameters["intra_op_thread_count"].string_value = str(intra_op_threads)
            (version / "model.py").unlink(missing_ok=True)
        (dest / name / "config.pbtxt").write_text(text_format.MessageToString(config))
    return dest
