"""What every domain shares: settings, request dependencies, API keys, request context and
body limits (ASGI middleware), the error types and their JSON rendering, JSON logs, Prometheus
metrics, health routes, busy polling after each answer and the common schema pieces. Imports no
domain package."""
