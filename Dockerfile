# Image for revloop's own services (used by docker-compose.yml; unverified without a Docker engine).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY revloop revloop
COPY platforms platforms
COPY ingest ingest
COPY streams streams
COPY sinks sinks
COPY connectors connectors
COPY infra infra
COPY demo demo
RUN pip install --no-cache-dir .
ENTRYPOINT []
CMD ["revloop", "--help"]
