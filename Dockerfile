# healthdns in a container. Build and run (see docs/operations.md, "Docker"):
#   docker build -t healthdns .
#   docker run -d --name healthdns -p 53:53/udp -p 53:53/tcp \
#     -v "$PWD/healthdns.toml:/etc/healthdns/healthdns.toml:ro" healthdns

# The base, pinned to an exact release (a digest needs a registry to look it up): both stages
# use the same one, and a Python update is a deliberate one-line change here.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: install healthdns and its dependencies into a virtual environment -------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/healthdns

# Only what the package needs: the packages listed in pyproject.toml, and the README it names.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY supervisor/ supervisor/
COPY responder/ responder/
COPY prober/ prober/
COPY signer/ signer/
COPY shared/ shared/
RUN /opt/healthdns/bin/pip install .

# --- run: the same base image with only the virtual environment added ---------------------------
FROM ${PYTHON_IMAGE}

# tini is PID 1: it forwards signals to the supervisor and reaps every zombie, also processes
# the supervisor did not start. setcap lets the non-root user bind port 53: the capability goes
# on the real interpreter (venv/bin/python is a symlink to it), and libcap2-bin goes again.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini libcap2-bin \
    && setcap cap_net_bind_service=+ep "$(readlink -f /usr/local/bin/python3)" \
    && apt-get purge -y --auto-remove libcap2-bin \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin healthdns

COPY --from=build /opt/healthdns /opt/healthdns
COPY docker/healthdns.toml /etc/healthdns/healthdns.toml
# No .pyc writes at run time: pip compiled them, and the root file system may be read-only.
ENV PATH=/opt/healthdns/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1

# Fail the build, not the first start, if the environment or the default config is broken.
RUN healthdns-supervisor --check-config --config /etc/healthdns/healthdns.toml > /dev/null

# A fixed uid (not only a name) so that Kubernetes' runAsNonRoot can check it.
USER 10001
EXPOSE 53/udp 53/tcp
# Healthy once every responder serves a current generation: /readyz of the control endpoint,
# which listens on the container's loopback only. urllib, as the image has no curl; any
# error or a status other than 2xx exits non-zero.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8053/readyz', timeout=2)"]
ENTRYPOINT ["tini", "--", "healthdns-supervisor"]
CMD ["--config", "/etc/healthdns/healthdns.toml"]
