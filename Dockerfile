# xccel in a container: `docker build -t xccel .` then see compose.yaml (PostgreSQL, a scheduled run-all, serve).
# Not built on the project's machines (no container engine there); kept deliberately plain.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY xccel_cli ./xccel_cli
COPY sql ./sql
RUN pip install . && useradd --create-home --uid 10001 xccel && mkdir -p /var/log/xccel \
    && chown xccel /var/log/xccel
USER xccel

# A container always talks to a configured PostgreSQL (XCCEL_DATABASE_URL); the embedded one is for laptops.
ENTRYPOINT ["xccel"]
CMD ["--help"]
