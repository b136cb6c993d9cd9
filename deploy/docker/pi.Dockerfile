# syntax=docker/dockerfile:1
# The Pi role on any Linux box with a USB drive: bluegrass-appliance and what it depends on
# (bluegrass-core, and bluegrass-panel, which the daemon serves itself).
# Built from the repository root: docker compose --profile pi build
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS wheels
WORKDIR /src
COPY core/ core/
COPY appliance/ appliance/
COPY panel/ panel/
RUN pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels \
    ./core ./appliance ./panel

FROM ${PYTHON_IMAGE}
# git: the mirror; util-linux, mount, e2fsprogs: finding, checking, mounting and preparing the
# drive; libudev1: pyudev.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git util-linux mount e2fsprogs libudev1 \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    python -m venv /opt/bluegrass \
    && /opt/bluegrass/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
       --find-links /wheels bluegrass-appliance
RUN install -d -m 0700 /var/lib/bluegrass-appliance
ENV PATH=/opt/bluegrass/bin:$PATH BLUEGRASS_APPLIANCE_STATE=/var/lib/bluegrass-appliance
CMD ["bluegrass-appliance", "run"]
