# Two images from one file:
#   serve    the HTTP and gRPC API over policy bundles: numpy, onnxruntime, fastapi, uvicorn,
#            grpcio (no torch)
#   trainer  adds torch 2.13 CPU and the training stack; runs the training-job worker
# Dependencies install before the code is copied, so code edits rebuild only the last layers.

FROM python:3.11-slim AS base
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app
RUN useradd --uid 10001 --user-group --create-home app \
 && mkdir -p /data \
 && chown app:app /data

# Byte-code is compiled at import instead of shipped, and pip leaves the serving venv: the
# serve image stays small.
FROM base AS serve-deps
COPY docker/requirements-serve.txt /tmp/
RUN python -m venv /opt/venv \
 && pip install --no-compile -r /tmp/requirements-serve.txt \
 && pip uninstall --yes pip setuptools

FROM base AS trainer-deps
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY docker/requirements-serve.txt docker/requirements-train.txt /tmp/
RUN python -m venv /opt/venv \
 && pip install --no-compile ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
        -r /tmp/requirements-serve.txt -r /tmp/requirements-train.txt

FROM base AS serve
COPY --from=serve-deps /opt/venv /opt/venv
WORKDIR /app
COPY docker/entrypoint.sh docker/healthcheck.py /app/docker/
COPY bear_core /app/bear_core
COPY service /app/service
USER app
ENV BEAR_STORE=/data BEAR_HOST=0.0.0.0 BEAR_PORT=8000 BEAR_GRPC_PORT=8001 BEAR_DEMO=false
EXPOSE 8000 8001
VOLUME ["/data"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/app/docker/healthcheck.py"]
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["serve"]

FROM base AS trainer
COPY --from=trainer-deps /opt/venv /opt/venv
WORKDIR /app
COPY docker/entrypoint.sh docker/healthcheck.py /app/docker/
COPY bear_core /app/bear_core
COPY service /app/service
USER app
ENV BEAR_STORE=/data BEAR_DEMO=false
VOLUME ["/data"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/app/docker/healthcheck.py", "--worker"]
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["worker"]
