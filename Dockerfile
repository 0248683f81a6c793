# syntax=docker/dockerfile:1
# One image for `fanline api`, `fanline process` and the Lambda processor (entrypoint overridden
# to `python -m awslambdaric`). Nothing here is architecture-specific (every dependency has
# wheels for amd64 and arm64), so one command builds both:
#   docker buildx build --platform linux/amd64,linux/arm64 -t REPO:TAG --push .
# Lambda takes single-architecture images only:
#   docker buildx build --platform linux/amd64 --provenance=false -t REPO:TAG-lambda --push .

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/fanline
WORKDIR /src
# .dockerignore lets in only pyproject.toml, README.md and the Python packages.
COPY . .
# docker-compose's locust service builds with EXTRAS=aws-lambda,load.
ARG EXTRAS=aws-lambda
RUN /opt/fanline/bin/pip install ".[${EXTRAS}]"

FROM python:3.11-slim
ENV PATH=/opt/fanline/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FANLINE_DATA_DIR=/data
RUN groupadd --system --gid 10001 fanline \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --create-home fanline
COPY --from=build /opt/fanline /opt/fanline
USER 10001:10001
WORKDIR /data
EXPOSE 8080
ENTRYPOINT ["fanline"]
CMD ["api", "--host", "0.0.0.0", "--port", "8080"]
