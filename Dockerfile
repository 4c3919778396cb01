# trio_codex: the server, the pinned native Codex CLI from PyPI (the cli extra), tini as PID 1.
#   docker build -t trio-codex .
#   docker run --rm -p 127.0.0.1:8000:8000 -v codex-home:/codex-home trio-codex
#   docker run --rm -it -v codex-home:/codex-home trio-codex codex login --device-auth
#   docker run --rm -v codex-home:/codex-home trio-codex doctor --run
FROM python:3.13-slim-bookworm

# tini reaps orphans and forwards SIGTERM to the server; bubblewrap is Codex's Linux sandbox
# (without it Codex falls back to a bundled copy and warns at every start).
RUN apt-get update \
    && apt-get install -y --no-install-recommends 'tini=0.19*' 'bubblewrap=0.8*' \
    && rm -rf /var/lib/apt/lists/*

# An unprivileged user; its CODEX_HOME (login, config.toml, sessions) is a volume.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin codex \
    && mkdir -p /codex-home /work \
    && chown codex:codex /codex-home /work

WORKDIR /src
COPY pyproject.toml README.md ./
COPY trio_codex ./trio_codex
# The cli extra pins openai-codex-cli-bin, so the image carries one known Codex CLI.
RUN pip install --no-cache-dir --root-user-action=ignore '/src[cli]'

ENV CODEX_HOME=/codex-home \
    CODEX_WORKDIR=/work \
    PYTHONUNBUFFERED=1
VOLUME ["/codex-home"]
USER 10001:10001
WORKDIR /work
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]

# `trio-codex` serves by default; `doctor` and `codex ...` are its other subcommands.
ENTRYPOINT ["tini", "--", "trio-codex"]
CMD ["--bind", "0.0.0.0:8000"]
