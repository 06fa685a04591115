"""Aggregator agent: the parameter server of a training job.

``Aggregator`` (server.py) reads gradients (or ring parameters), applies them per sync mode
(modes.py, rounds.py, members.py) to the server state (state.py), publishes parameter versions,
evaluates, checkpoints transactionally (checkpoint.py) and ends with ONNX export and registration
(finish.py).
"""
