"""Model control through the data plane: models sent with their load request."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from sonic import zoo
from sonic.protocol.errors import SonicError
from sonic.protocol.types import InferRequest, InputTensor
from sonic.server.dataplane import DataPlane
from sonic.server.models import ModelManager
from sonic.server.shm import SystemSharedMemory

CONFIG = {
    "name": "sent",
    "backend": "onnxruntime",
    "max_batch_size": 8,
    "input": [{"name": "input", "data_type": "TYPE_FP32", "dims": [16]}],
    "output": [{"name": "output", "data_type": "TYPE_FP32", "dims": [5]}],
}


async def _infer(dp: DataPlane) -> np.ndarray:
    x = np.ones((1, 16), np.float32)
    resp = await dp.infer(InferRequest("sent", inputs=[InputTensor("input", "FP32", (1, 16), x)]))
    out = resp.outputs[0].data
    assert out is not None
    return out


def test_uploaded_model_files_are_removed_when_replaced_or_unloaded(tmp_path: Path) -> None:
    async def main() -> None:
        mgr = ModelManager([tmp_path], mode="explicit")
        dp = DataPlane(mgr, SystemSharedMemory(False))
        await mgr.start()
        config = json.dumps(CONFIG)
        await dp.load_model("sent", config, {"file:1/model.onnx": zoo.mlp_onnx(seed=1)})
        first = mgr.source_dir("sent")
        assert (first / "1" / "model.onnx").is_file()
        y1 = await _infer(dp)
        # a reload with other files swaps them in and removes the first upload
        await dp.load_model("sent", config, {"file:1/model.onnx": zoo.mlp_onnx(seed=2)})
        second = mgr.source_dir("sent")
        assert second != first and not first.parent.exists() and second.is_dir()
        assert not np.allclose(await _infer(dp), y1)
        # a failed reload keeps the model and its files
        with pytest.raises(SonicError):
            await dp.load_model("sent", config, {"file:1/model.onnx": b"not onnx"})
        assert mgr.source_dir("sent") == second and second.is_dir()
        await _infer(dp)
        await dp.unload_model("sent")
        assert not second.parent.exists()
        await mgr.stop()

    asyncio.run(main())
