#!/bin/sh
# serve: the HTTP API; worker: the training-job dispatcher; anything else runs as given.
set -e
case "${1:-serve}" in
  serve) shift || true; exec python -m service serve --no-demo "$@" ;;
  worker) shift; exec python -m service.worker "$@" ;;
  *) exec "$@" ;;
esac
