"""The webhook bridge: Open Inference Protocol v2 over HTTP in front of the Kafka inference workers.

Stateless (Redis and Kafka hold the state), so several bridges run side by side, each with its
own reply topic. Entry points: ``aiaas worker bridge --port P`` (``aiaas.agents.bridge.main``) and
``aiaas serve MODEL.onnx --name N`` (``aiaas.agents.bridge.serve``: infrastructure, workers, bridge).

HTTP API (OpenAPI at ``/openapi.json``; errors are ``{"error": ..., "code": ...}``):

- ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``; ``GET /v2/models/{m}[/versions/{v}]``
  and ``.../ready``; ``POST /v2/models/{m}[/versions/{v}]/infer`` with JSON tensors or the binary
  extension (``Inference-Header-Content-Length``; ``binary_data_output`` / per-output
  ``binary_data`` for binary answers).
- Async: ``?callback=URL`` or ``parameters.callback_url`` or ``Prefer: respond-async`` -> 202 with
  ``Location: /v2/requests/{id}`` (poll: 202 pending, 200 done). Callbacks get a POST signed
  ``X-Aiaas-Signature: t=<ts>,v1=<HMAC-SHA256(tenant secret, "<ts>.<body>")>``; receivers check
  it with ``aiaas.client.webhooks.verify_signature``.
- ``Idempotency-Key`` (same key + body: same request and result; other body: 409),
  ``?timeout=`` seconds (504 when no reply in time), ``traceparent`` passed through.
- ``GET /v1/models``, ``POST /v1/jobs`` (a JobSpec), ``GET /v1/jobs/{id}``; ``/metrics`` (a key with
  the ``metrics`` scope, unless ``AIAAS_BRIDGE_METRICS_OPEN``).

Auth: ``Authorization: Bearer <key>`` or ``X-API-Key`` (``aiaas keys create --tenant T``); keys
have scopes (infer, models, jobs; metrics only when asked); a tenant sees shared models and its own.
A caller is known from its headers before its body is read; bodies and calls in flight are capped
(``aiaas.agents.bridge.admission``); readiness and infer follow Kafka's reachability
(``aiaas.agents.bridge.health``). Settings: ``AIAAS_BRIDGE_*`` (``aiaas.agents.bridge.settings``).
"""
