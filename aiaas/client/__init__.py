"""The caller's side: request-reply inference over Kafka, pipelined batches, signed callbacks.

Importing it needs only the ``client`` extra (aiokafka, pydantic, numpy): no torch, no onnxruntime.
"""

from aiaas.client.inference import InferenceClient, InferResult

__all__ = ["InferResult", "InferenceClient"]
