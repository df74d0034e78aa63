# healthdns in a container. Build and run (see docs/operations.md, "Docker"):
#   docker build -t healthdns .
#   docker run -d --name healthdns -p 53:53/udp -p 53:53/tcp \
#     -v "$PWD/healthdns.toml:/etc/healthdns/healthdns.toml:ro" healthdns

# The base, fully qualified and pinned to an exact release and its digest (the multi-platform
# index of the tag, as published and pinned by other projects), so that a build gets the same
# bytes whatever the tag points to later: both stages use it, and a Python update is a
# deliberate one-line change here. Check a new digest with
# `docker buildx imagetools inspect docker.io/library/python:<tag>` before pinning it.
ARG PYTHON_IMAGE=docker.io/library/python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1

# --- build: install healthdns and its dependencies into a virtual environment -------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/healthdns

# The dependencies at the exact versions of requirements.lock, each file checked against its
# hash (`./dev lock` makes the lock from pyproject.toml), then healthdns itself built with the
# locked setuptools and nothing else from the network; the build backend leaves afterwards.
WORKDIR /src
COPY requirements.lock ./
RUN /opt/healthdns/bin/pip install --require-hashes --no-deps -r requirements.lock
# Only what the package needs: the packages listed in pyproject.toml, the README and licence.
COPY pyproject.toml README.md LICENSE ./
COPY supervisor/ supervisor/
COPY responder/ responder/
COPY prober/ prober/
COPY signer/ signer/
COPY transfer/ transfer/
COPY peers/ peers/
COPY shared/ shared/
RUN /opt/healthdns/bin/pip install --no-deps --no-index --no-build-isolation . \
    && /opt/healthdns/bin/pip uninstall --yes setuptools

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
