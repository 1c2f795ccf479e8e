# syntax=docker/dockerfile:1
#
# skuflow worker image.
#
#   docker build -t skuflow:0.1.0 .
#   docker run --read-only --tmpfs /tmp -e SKUFLOW_KAFKA_BOOTSTRAP=kafka:9092 \
#     -e SKUFLOW_DATABASE_URL=postgresql://... skuflow:0.1.0 --class all
#
# Stage 1 builds wheels of skuflow and of every dependency; stage 2 installs them into a
# virtualenv on a clean slim base: no compiler, no pip in the virtualenv, no source tree, no
# wheel files left behind. The image holds no credentials: the worker reads them from the
# environment (Kubernetes Secrets, see helm/skuflow). tests/deploy/test_image.py checks every
# rule of this file and runs both install steps into a scratch directory.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: wheels only ---------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Exactly the files the distribution is built from (.dockerignore keeps the rest out).
COPY pyproject.toml README.md ./
COPY config/ config/
COPY handlers/ handlers/
COPY skuflow/ skuflow/
COPY worker/ worker/
RUN python -m pip wheel --wheel-dir /wheels .

# --- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
ARG SKUFLOW_VERSION=0.1.0
LABEL org.opencontainers.image.title="skuflow" \
      org.opencontainers.image.description="Key-ordered, deadline-aware Kafka stream worker (warehouse, marketplace and ERP events)" \
      org.opencontainers.image.version="${SKUFLOW_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="skuflow" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# A fixed, non-root UID/GID (the Helm chart's securityContext uses the same numbers). HOME is
# /tmp: the only writable path when the root filesystem is mounted read-only.
RUN groupadd --system --gid 10001 skuflow \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin skuflow

# The wheels are bind-mounted from the build stage, so they never become a layer. Bytecode is
# compiled here, at build time; PYTHONDONTWRITEBYTECODE below stops any write at run time.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv --without-pip /opt/skuflow \
 && python -m pip --python /opt/skuflow/bin/python install --no-cache-dir --no-index \
        --find-links=/wheels skuflow

ENV PATH=/opt/skuflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
# skuflow is PID 1 and receives SIGTERM itself (exec form, no shell in between): readiness
# drops, in-flight work drains within engine.drain_timeout_seconds, offsets are committed,
# exit 0. It starts no child processes, so there is nothing for an init to reap.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/skuflow/bin/skuflow", "run"]
