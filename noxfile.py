"""Development tasks: ``nox`` runs lint, typecheck and the tests on every supported Python.

``nox -s tests-3.13 -- -m "not slow"`` runs the fast layers only. The tests session installs the
pinned Codex CLI (and the Node SDK) from ``tests/node`` when npm is available, so the end-to-end
tests run against the real CLI; without npm they are skipped (outside CI) with a message.
``tests_cli_latest`` runs the ``realcodex`` tests again against the newest Codex CLI release,
pinned in ``tests/node-latest``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.needs_version = ">=2025.5.1"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_external_run = True
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests", "tests_cli_latest"]

PYTHONS = ["3.11", "3.13"]
# The flake8-async rules ruff does not implement (ruff covers the rest of ASYNC).
FLAKE8_ASYNC_ONLY = [
    "ASYNC101",
    "ASYNC102",
    "ASYNC103",
    "ASYNC104",
    "ASYNC111",
    "ASYNC113",
    "ASYNC120",
    "ASYNC121",
    "ASYNC128",
]
SOURCES = ("trio_codex", "tests", "bench")


def _python_files() -> list[str]:
    files = [str(p) for d in SOURCES if Path(d).is_dir() for p in sorted(Path(d).rglob("*.py"))]
    return [*files, "noxfile.py"]


@nox.session(python=PYTHONS[0])
def lint(session: nox.Session) -> None:
    """ruff format and check, the flake8-async rules ruff lacks, the layout's import rules, and
    hadolint on the Dockerfile."""
    session.install("--group", "lint")
    session.install("--no-deps", "-e", ".")  # lint-imports reads the package's own imports
    session.run("ruff", "format", "--check", ".")
    session.run("ruff", "check", ".")
    # Files, not directories: flake8-async crashes on a directory argument.
    session.run("flake8-async", "--enable=" + ",".join(FLAKE8_ASYNC_ONLY), *_python_files())
    session.run("lint-imports")
    session.run("hadolint", "Dockerfile")


@nox.session(python=PYTHONS[0])
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, the tests and this file."""
    session.install("-e", ".", "--group", "typing")
    session.run(
        "mypy", "trio_codex", "tests", "noxfile.py", *(["bench"] if Path("bench").is_dir() else [])
    )


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite with coverage; pass pytest arguments after ``--``."""
    # The cli extra: the PyPI Codex binary, run end to end by tests/test_cli_extra.py.
    session.install("-e", ".[cli]", "--group", "tests")
    if shutil.which("npm") and not os.environ.get("TRIO_CODEX_TEST_CODEX"):
        # The pinned Codex CLI and the Node SDK the end-to-end tests use.
        session.run("npm", "ci", "--prefix", "tests/node", "--no-audit", "--no-fund", external=True)
    if shutil.which("npm"):
        # The Node client recipes (OpenAI Node SDK, Vercel AI SDK) of docs/clients.md.
        session.run(
            "npm", "ci", "--prefix", "tests/clients/node", "--no-audit", "--no-fund", external=True
        )
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "report", "--show-missing", "--skip-covered")


@nox.session(python=PYTHONS[-1])
def tests_cli_latest(session: nox.Session) -> None:
    """The ``realcodex`` tests against the newest Codex CLI release (``tests/node-latest``), so a
    change in Codex shows up before the pinned version moves; pass pytest arguments after
    ``--``."""
    session.install("-e", ".[cli]", "--group", "tests")
    npm_ci = ("npm", "ci", "--no-audit", "--no-fund", "--prefix")
    session.run(*npm_ci, "tests/node-latest", external=True)
    session.run(*npm_ci, "tests/clients/node", external=True)  # the Node client recipes
    codex = Path("tests/node-latest/node_modules/.bin/codex").resolve()
    session.run(
        "pytest", "-m", "realcodex", *session.posargs, env={"TRIO_CODEX_TEST_CODEX": str(codex)}
    )
