# One image for everything Lumiflow runs on Kubernetes: the Lumiflow operator, the dask-kubernetes
# controller, the Dask scheduler and workers, and the run driver (`lumiflow run`).
#
#   docker build -t registry.example.org/you/lumiflow:0.1.0 .
#
# Stage 1 builds wheels (the compilers stay there); stage 2 installs them into a clean
# python:3.11-slim with no build tools and runs as an unprivileged user (uid 1000), so it works
# with the chart's read-only root filesystem (caches go to /tmp, an emptyDir in the pods).

FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY processor ./processor
COPY analyses ./analyses
COPY operators ./operators
# Every wheel the image needs, collected (or, for a dependency without a wheel for this platform,
# compiled) here; the runtime stage then installs them offline and needs no compiler.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[xrootd,kubernetes]"

FROM python:3.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 lumiflow \
    && useradd --uid 1000 --gid 1000 --home-dir /home/lumiflow --create-home --shell /usr/sbin/nologin lumiflow
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "lumiflow[xrootd,kubernetes]" \
    && rm -rf /wheels
ENV PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    LUMIFLOW_CACHE=/tmp/lumiflow-cache \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    DASK_TEMPORARY_DIRECTORY=/tmp/dask
USER 1000:1000
WORKDIR /tmp
# tini reaps Dask's worker processes; the pods give the command (kopf, dask, lumiflow) as args.
ENTRYPOINT ["tini", "--"]
CMD ["lumiflow", "--help"]
