"""The model registry on Kafka: versions and their artifacts (store), the artifact log that carries
the bytes in chunks, and version claims that make two publishers agree on a number."""
