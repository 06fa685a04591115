"""Wire contracts of aiaas: pydantic models of every message, job spec and API body.

This package imports nothing else of aiaas, so producers in any process (or language, via the
exported JSON Schemas) can depend on it alone.
"""

from aiaas.schemas.envelope import Envelope
from aiaas.schemas.errors import AiaasError, ErrorCode

__all__ = ["AiaasError", "Envelope", "ErrorCode"]
