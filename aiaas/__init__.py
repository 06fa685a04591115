"""aiaas: AI as a service on Kafka (training, ONNX serving, a webhook bridge).

The public surface for callers is here: the Kafka inference client, its settings, the errors and
the message schemas. Importing it needs only the ``client`` extra (no torch, no onnxruntime) and does
no network I/O.

    import aiaas
    async with aiaas.InferenceClient(aiaas.Settings()) as client:
        result = await client.infer("digits", {"input": x})

The rest installs under this name too: ``aiaas.streams`` (Kafka plumbing and the wire),
``aiaas.schemas``, ``aiaas.agents.*`` (one package per role), ``aiaas.ml``, ``aiaas.data``,
``aiaas.registry``, ``aiaas.client`` and ``aiaas.cli``. In the repository the design's folders
(``streams/``, ``schemas/``, ``agents/``, ``infra/``) sit at the top and ``aiaas/`` links to them;
see docs/architecture.md.
"""

from aiaas import schemas
from aiaas.client.inference import InferenceClient, InferResult
from aiaas.schemas.errors import (
    AiaasError,
    BadInput,
    DeadlineExceeded,
    ErrorCode,
    InferenceError,
    NotFound,
    Unavailable,
)
from aiaas.streams.settings import Settings

__all__ = [
    "AiaasError",
    "BadInput",
    "DeadlineExceeded",
    "ErrorCode",
    "InferResult",
    "InferenceClient",
    "InferenceError",
    "NotFound",
    "Settings",
    "Unavailable",
    "schemas",
]
