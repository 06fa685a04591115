"""An ONNX runtime for MLServer (it ships none on PyPI): onnxruntime behind MLServer's MLModel.

Copied next to the model-settings.json that ``benchmarks.peers`` writes and loaded by MLServer in
its own virtual environment (never imported by aiaas): the few lines a user would write to serve
an ONNX file with MLServer, using the same onnxruntime version and thread count as aiaas's worker.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):  # type: ignore[misc]  # mlserver lives in the peer's venv only
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("PEER_THREADS", os.cpu_count() or 1))
        if os.environ.get("PEER_SPIN") == "0":  # benchmarks.peers --mlserver-no-spin
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        uri = await get_model_uri(self._settings)
        self._session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {inp.name: NumpyCodec.decode_input(inp).astype(np.float32, copy=False)
                 for inp in payload.inputs}
        values = self._session.run(self._outputs, feeds)
        return InferenceResponse(
            model_name=self.name, model_version=self.version,
            outputs=[NumpyCodec.encode_output(n, v) for n, v in zip(self._outputs, values, strict=True)],
        )
