"""The OpenAI-compatible HTTP service: app factory, settings, Prometheus metrics, micro-batcher."""
