# healthdns in a container. Build and run (see docs/operations.md, "Docker"):
#   docker build -t healthdns .
#   docker run -d --name healthdns -p 53:53/udp -p 53:53/tcp \
#     -v "$PWD/healthdns.toml:/etc/healthdns/healthdns.toml:ro" healthdns

# --- build: install healthdns and its dependencies into a virtual environment -------------------
FROM python:3.11-slim AS build

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
FROM python:3.11-slim

# tini is PID 1: it forwards signals to the supervisor and reaps every zombie, also processes
# the supervisor did not start. setcap lets the non-root user bind port 53: the capability goes
# on the real interpreter (venv/bin/python is a symlink to it), and libcap2-bin goes again.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini libcap2-bin \
    && setcap cap_net_bind_service=+ep "$(readlink -f /usr/local/bin/python3)" \
    && apt-get purge -y --auto-remove libcap2-bin \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin healthdns

COPY --from=build /opt/healthdns /opt/healthdns
COPY docker/healthdns.toml /etc/healthdns/healthdns.toml
ENV PATH=/opt/healthdns/bin:$PATH

# Fail the build, not the first start, if the environment or the default config is broken.
RUN healthdns-supervisor --check-config --config /etc/healthdns/healthdns.toml > /dev/null

USER healthdns
EXPOSE 53/udp 53/tcp
ENTRYPOINT ["tini", "--", "healthdns-supervisor"]
CMD ["--config", "/etc/healthdns/healthdns.toml"]
