# stream-sentinel service image: `docker compose up` builds it (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package needs, so a local .venv or test output never reaches the image;
# no extras: the report's matplotlib is for `replay --report`, the service never draws.
# Dependencies at the versions the tests ran (constraints.txt, from scripts/constraints).
COPY constraints.txt pyproject.toml README.md /tmp/src/
COPY stream_sentinel /tmp/src/stream_sentinel
RUN pip install --constraint /tmp/src/constraints.txt /tmp/src && rm -rf /tmp/src

# No shell, no home, a fixed uid: the process needs nothing but the network.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sentinel
# The working directory is where `run` looks for sentinel.toml: mount one here,
# or configure everything through SENTINEL_* variables as docker-compose.yml does.
WORKDIR /etc/stream-sentinel
USER 10001:10001

# Metrics, /healthz, /readyz and /status. The service binds loopback unless
# told otherwise; in a container that would reach nobody, so the image says so.
ENV SENTINEL_HTTP_HOST=0.0.0.0
EXPOSE 9464

ENTRYPOINT ["stream-sentinel"]
CMD ["run"]
