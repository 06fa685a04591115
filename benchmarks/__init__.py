"""Benchmarks: `python -m benchmarks.<name> [--quick]`, each printing one JSON object last."""
