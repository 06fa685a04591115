"""The webhook bridge: OIP v2 over HTTP in front of the Kafka inference workers.

Stateless (Redis and Kafka hold the state), so several bridges run side by side, each with its
own reply topic. Entry point: ``aiaas worker bridge`` (``agents.bridge.main``).
"""
