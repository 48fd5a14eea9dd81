# flowc's API server: `docker compose up` builds it and starts it beside PostgreSQL.
# Without DATABASE_URL it serves from a SQLite file in /data.
#
# The image holds the same wheel that users install: stage one builds it from the source
# tree, stage two installs it and nothing else.  tests/packaging/test_docker.py runs these
# same steps outside Docker (Docker does not run on our CI machines), so keep each step a
# plain command: what the test cannot run, it must be told about.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN python -m pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN python -m pip install /wheels/flowc-*.whl
RUN useradd --create-home --uid 1000 flowc
RUN mkdir /data && chown flowc /data

USER flowc
WORKDIR /data
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["flowc", "serve", "--host", "0.0.0.0"]
