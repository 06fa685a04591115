"""Shared plumbing: settings, topic catalog, codecs, producer/consumer wrappers, chunking, DLQ."""
