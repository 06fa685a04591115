"""Torch toolkit shared by the trainer and the aggregator (agents never import each other).

models: build the job's model and loss; optim: optimizer and schedule; params: tensors <-> numpy
and validation; compression: fp16 / top-k with error feedback; evaluate: test metrics;
export: ONNX export and onnxruntime check.
"""
