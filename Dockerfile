# One image for every mahak-sync process (worker, webhook, simulator); the command picks the role.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LOG_FORMAT=json
WORKDIR /app
COPY pyproject.toml README.md ./
COPY mahak_sync ./mahak_sync
COPY mahak_client ./mahak_client
COPY mahak_simulator ./mahak_simulator
COPY shopdb ./shopdb
COPY workflows ./workflows
COPY activities ./activities
COPY worker.py starter.py ./
RUN pip install --no-cache-dir . && useradd --system --uid 10001 app
USER app
CMD ["python", "worker.py"]
