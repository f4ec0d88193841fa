"""Inference: loaded model versions and how their graphs run (inline, on a worker thread or
micro-batched), request arrays, the task API (predict, sample_action, value) and the Open
Inference Protocol v2 REST API."""
