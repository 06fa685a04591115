"""Agents: one process per role (trainer, aggregator, inference, bridge); they meet only on topics."""
