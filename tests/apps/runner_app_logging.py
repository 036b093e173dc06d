"""A program that configures structlog itself at import: the CLI must keep it."""

from __future__ import annotations

import sys

import structlog
from runner_app import build_finishing

structlog.configure(
    processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
    logger_factory=structlog.PrintLoggerFactory(sys.stdout),
)

__all__ = ["build_finishing"]
