# One image for every long-running scorepipe service: the Prefect flow worker, the stream consumer and
# the HTTP server (docker-compose.yml picks the command). Built from the locked requirements, run as a
# non-root user; all state (registry, outputs, live window) lives under SCOREPIPE_HOME, a volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SCOREPIPE_HOME=/app/.scorepipe \
    OMP_NUM_THREADS=1

WORKDIR /app

# Dependencies first: this layer is rebuilt only when the lock changes. The lock also pins the
# test and lint tools (a few MB); one lock keeps the image and CI on the same versions.
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY pyproject.toml README.md prefect.yaml ./
COPY scoring/ scoring/
COPY integrations/ integrations/
COPY reports/ reports/
COPY batch/ batch/
COPY monitoring/ monitoring/
COPY serving/ serving/
COPY flows/ flows/
COPY streaming/ streaming/
COPY drift/ drift/
COPY performance/ performance/
COPY gate/ gate/
COPY devservers/ devservers/
COPY scorepipe/ scorepipe/
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 scorepipe \
    && mkdir -p "$SCOREPIPE_HOME" \
    && chown scorepipe "$SCOREPIPE_HOME"

USER scorepipe
ENTRYPOINT ["scorepipe"]
CMD ["--help"]
