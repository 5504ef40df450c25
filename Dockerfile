# Image for revloop's own services (used by docker-compose.yml; unverified without a Docker engine).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY revloop revloop
COPY ingest ingest
COPY streams streams
COPY sinks sinks
COPY schemas schemas
COPY connectors connectors
COPY infra infra
RUN pip install --no-cache-dir .
ENTRYPOINT []
CMD ["revloop", "--help"]
