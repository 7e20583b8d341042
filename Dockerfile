# The Agent Server image: `agent-server serve` by default; the same image runs
# `agent-server db upgrade`, `agent-server worker` and `agent-server watch-deposits`
# (compose.yaml). Build: docker build -t agent-server .
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/agent-server
COPY pyproject.toml README.md ./
COPY agent_server ./agent_server
COPY billing ./billing
COPY wallets ./wallets
# The dependencies are pinned to exact versions in pyproject.toml.
RUN /opt/agent-server/bin/pip install --upgrade pip==25.3 \
    && /opt/agent-server/bin/pip install .

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --user-group --home-dir /srv/agent-server --create-home agent
COPY --from=build /opt/agent-server /opt/agent-server
ENV PATH=/opt/agent-server/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AGENT_SERVER_HOST=0.0.0.0 \
    AGENT_SERVER_PORT=8000 \
    AGENT_SERVER_LOG_FORMAT=json
USER agent
WORKDIR /srv/agent-server
EXPOSE 8000
# Ready: the database answers and is migrated to this version's schema.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"]
ENTRYPOINT ["agent-server"]
CMD ["serve"]
