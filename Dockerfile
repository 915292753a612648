# syntax=docker/dockerfile:1
#
# hashdb's container image: one image for every role (`hashdb migrate`, `hashdb serve`,
# `hashdb worker`, `hashdb backup`), chosen by the command; `serve` by default.
#
# Two stages. The builder has a compiler (pdqhash has no binary wheel for every Python
# and is built from source) and turns the project and its dependencies into wheels, then
# installs them into a virtual environment at /opt/hashdb/venv. The runtime stage copies
# only that environment onto a clean python slim image: no compiler, no headers, no pip
# cache. OpenCV is opencv-python-headless (pyproject.toml), which needs no X11/GL
# libraries; PyAV, faiss and psycopg bring their own shared libraries in their wheels.
# The one system package added at run time is the PostgreSQL client (pg_dump and
# pg_restore, which `hashdb backup` / `hashdb restore` call); its major version must be
# at least the server's (bookworm ships 15; compose.yaml runs postgres:15).
#
# The numba kernels are compiled at build time (`warm_kernels`, as `make install` does)
# into NUMBA_CACHE_DIR, owned by the runtime user: numba only uses a cache directory it
# can write to, and recompiles (once, into the same directory) when the host's CPU
# differs from the build machine's, so it must stay writable.
#
# Build:  docker build -t hashdb .
# Run:    docker run --env-file deploy/hashdb.env -p 8000:8000 hashdb serve

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hashdb ./hashdb
COPY ingest ./ingest
COPY api ./api
RUN python -m pip wheel --wheel-dir /wheels . \
    && python -m venv /opt/hashdb/venv \
    && /opt/hashdb/venv/bin/pip install --no-index --find-links /wheels hashdb


FROM ${PYTHON_IMAGE} AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 hashdb \
    && useradd --system --uid 10001 --gid hashdb --home-dir /var/lib/hashdb \
        --no-create-home --shell /usr/sbin/nologin hashdb \
    && mkdir -p /var/lib/hashdb/snapshots /var/lib/hashdb/imports /var/cache/hashdb/numba \
    && chown -R hashdb:hashdb /var/lib/hashdb /var/cache/hashdb
COPY --from=builder /opt/hashdb/venv /opt/hashdb/venv
ENV PATH=/opt/hashdb/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/var/cache/hashdb/numba \
    HASHDB_DATA_DIR=/var/lib/hashdb \
    HASHDB_BIND=0.0.0.0:8000
USER hashdb
WORKDIR /var/lib/hashdb
RUN python -c 'from api.loader import warm_kernels; warm_kernels()'
EXPOSE 8000
# /readyz: 200 once the indexes are loaded and the database answers (api/health.py).
# Only `serve` answers HTTP: compose.yaml disables this check for the other roles.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('HASHDB_BIND', ':8000').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=4)"]
ENTRYPOINT ["hashdb"]
CMD ["serve"]
