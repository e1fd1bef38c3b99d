# timeline's image: the runtime lock only, installed the way `make install-runtime` installs it (uv from
# requirements/tools.txt, then requirements/runtime.txt, both by hash), as a built wheel rather than editable.
# Build: docker build -t timeline .   Run: docker compose up (PostgreSQL), or docker run -p 8000:8000 timeline
# (SQLite in the volume /var/lib/timeline).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV UV_PYTHON_DOWNLOADS=never UV_NO_CONFIG=1 UV_NO_CACHE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements/tools.txt requirements/runtime.txt requirements/build.txt requirements/
RUN python -m venv /opt/tools \
 && /opt/tools/bin/python -m pip install --quiet --require-hashes -r requirements/tools.txt
RUN python -m venv --without-pip /opt/timeline \
 && /opt/tools/bin/uv pip install --quiet --python /opt/timeline/bin/python --require-hashes -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY src/timeline src/timeline
COPY migrations migrations
COPY fixtures fixtures
RUN /opt/tools/bin/uv pip install --quiet --python /opt/timeline/bin/python --no-deps --build-constraints requirements/build.txt . \
 && /opt/timeline/bin/timeline --version

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/timeline --create-home timeline
COPY --from=build /opt/timeline /opt/timeline
ENV PATH=/opt/timeline/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TIMELINE_DATABASE_URL=sqlite:////var/lib/timeline/timeline.db
USER timeline
WORKDIR /var/lib/timeline
VOLUME /var/lib/timeline
EXPOSE 8000
# /health answers 200 once the views are up to date with the log (the slim image has no curl).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
# Migrates, imports the packaged fixtures not yet recorded, serves.
CMD ["timeline", "serve", "--host", "0.0.0.0", "--port", "8000"]
