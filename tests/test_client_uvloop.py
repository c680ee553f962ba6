"""The asyncio client on uvloop (whose transports are not asyncio.Transport subclasses)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import uvloop

from sonic import zoo
from sonic.client import Client
from sonic.server.process import ServerProcess


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_ainfer_on_uvloop(tmp_path: Path, transport: str) -> None:
    repo = zoo.write_sonic_repository(tmp_path, models=("mlp",))
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    with ServerProcess(repo) as server:
        url = server.http_url if transport == "http" else server.grpc_url

        async def main() -> np.ndarray:
            async with Client.from_config({"model": "mlp", "transport": transport, "servers": [url]}) as c:
                return np.asarray((await c.ainfer({"input": x}))["output"])

        out = uvloop.run(main())
        with Client.from_config({"model": "mlp", "transport": transport, "servers": [url]}) as c:
            np.testing.assert_allclose(out, c.infer({"input": x})["output"], rtol=1e-6)
    assert out.shape == (3, 5)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
