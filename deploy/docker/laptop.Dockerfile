# syntax=docker/dockerfile:1
# The laptop role in a container (a home server or NAS syncing its folders): bluegrass-core +
# bluegrass-laptop only; no Flask, gunicorn or pyudev.
# Built from the repository root: docker compose --profile laptop build
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS wheels
WORKDIR /src
COPY core/ core/
COPY laptop-client/ laptop-client/
RUN pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels ./core ./laptop-client

FROM ${PYTHON_IMAGE}
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    python -m venv /opt/bluegrass \
    && /opt/bluegrass/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
       --find-links /wheels bluegrass-laptop
# The folders the named volumes are mounted on exist (and are the user's) in the image, so
# that new volumes start with that owner.
RUN useradd --uid 1000 --user-group --create-home bluegrass \
    && install -d -o bluegrass -g bluegrass -m 0700 /home/bluegrass/.config/bluegrass \
       /home/bluegrass/.local/state/bluegrass
ENV PATH=/opt/bluegrass/bin:$PATH
USER bluegrass
WORKDIR /home/bluegrass
CMD ["bluegrass", "run"]
