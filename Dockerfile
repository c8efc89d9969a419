# The driftline image used by compose.yaml for the worker and the retrainer.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY detectors ./detectors
COPY lifecycle_store ./lifecycle_store
COPY retrainer ./retrainer
COPY streams ./streams
COPY driftline ./driftline
RUN pip install --no-cache-dir ".[all]"
ENTRYPOINT []
CMD ["driftline", "--help"]
