"""Datasets for training jobs: the content-addressed dataset store, streamed multipart uploads
and the datasets API."""
