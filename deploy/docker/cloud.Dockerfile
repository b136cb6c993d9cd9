# syntax=docker/dockerfile:1
# The cloud role: bluegrass-cloud and what it depends on (bluegrass-core, and bluegrass-panel
# for its web interface); no appliance.
# Built from the repository root: docker compose --profile cloud build
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS wheels
WORKDIR /src
COPY core/ core/
COPY panel/ panel/
COPY cloud/ cloud/
RUN pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels \
    ./core ./panel ./cloud

FROM ${PYTHON_IMAGE}
# git: the snapshot store; ssh-keygen: the sync endpoint's host key; setpriv (util-linux):
# rclone dies with its parent; find: the snapshot walk.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client util-linux findutils \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    python -m venv /opt/bluegrass \
    && /opt/bluegrass/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
       --find-links /wheels bluegrass-cloud
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home bluegrass \
    && mkdir /data && chown bluegrass:bluegrass /data
COPY deploy/docker/cloud-entrypoint.sh /usr/local/bin/bluegrass-cloud-entrypoint
ENV PATH=/opt/bluegrass/bin:$PATH BLUEGRASS_DATA=/data
USER bluegrass
VOLUME /data
# 2022: the sync endpoint (sftp); 8443: the devices' port (TLS with a pinned key); 8080: the
# web UI (put TLS in front).
EXPOSE 2022 8443 8080
ENTRYPOINT ["/usr/local/bin/bluegrass-cloud-entrypoint"]
CMD ["bluegrass-cloud", "--data", "/data", "run", "--bind", "0.0.0.0"]
