# flowc's API server: `docker compose up` builds it and starts it beside PostgreSQL.
# Without DATABASE_URL it serves from a SQLite file in /data.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The dependencies first, from pyproject.toml alone: a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install -r requirements.txt

COPY grammars ./grammars
COPY dsl ./dsl
COPY compiler ./compiler
COPY runtime ./runtime
COPY server ./server
COPY cli ./cli
RUN pip install --no-deps . \
    && useradd --create-home --uid 1000 flowc \
    && mkdir /data && chown flowc /data

USER flowc
WORKDIR /data
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["flowc", "serve", "--host", "0.0.0.0"]
