"""Keep the console to the suite's own lines: what the libraries say goes to a log file.

Lightning's info lines (the accelerators it found, its tips, "`Trainer.fit` stopped") and the
warnings known to come from the libraries the suite drives (Lightning's advice on a Trainer the
suite configured, deprecations inside torch, Avalanche, Brevitas) are written to a log file in the
run folder instead of the console; `--verbose` shows them on the console as well. Every other
warning still reaches the console (and the log file): only the known ones are rerouted.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

LIBRARY_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning")
# (module, message) regular expressions of third-party warnings that hold nothing a user of the
# suite can act on: a warning raised in a matching module with a matching message is logged only
LIBRARY_WARNINGS = (
    (r"(pytorch_lightning|lightning_fabric)\.", r""),
    (r"(torch|torchvision|torchmetrics|avalanche|brevitas)\.", r"(?i)deprecated"),
)
WARNINGS_LOGGER = "cycl_bench.library_warnings"
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


def module_of(filename: str) -> str:
    """'torch.utils._pytree' for .../site-packages/torch/utils/_pytree.py; '' outside installed
    packages (the suite's own code, a script)."""
    parts = Path(filename).with_suffix("").parts
    installed = [i for i, part in enumerate(parts) if part in ("site-packages", "dist-packages")]
    return ".".join(parts[installed[-1] + 1 :]) if installed else ""


def is_library_warning(message: Warning | str, filename: str) -> bool:
    module = module_of(filename)
    return any(
        re.match(module_pattern, module) and re.search(message_pattern, str(message))
        for module_pattern, message_pattern in LIBRARY_WARNINGS
    )


@contextmanager
def library_output(log_file: Path, *, verbose: bool = False) -> Iterator[Path]:
    """Within the block, library loggers and known library warnings write to `log_file`
    (appended to: a resumed run adds to it), and to the console too when `verbose`."""
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    loggers = [logging.getLogger(name) for name in (*LIBRARY_LOGGERS, WARNINGS_LOGGER)]
    saved = [(logger, logger.handlers[:], logger.propagate, logger.level) for logger in loggers]
    for logger, handlers, _, _ in saved:
        logger.handlers = [*handlers, handler] if verbose else [handler]
        logger.propagate = verbose and logger.propagate and logger.name != WARNINGS_LOGGER
        logger.setLevel(logging.INFO)  # Lightning's info lines are what the log file is for
    show = warnings.showwarning

    def route(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        text = warnings.formatwarning(message, category, filename, lineno, line)
        logging.getLogger(WARNINGS_LOGGER).warning(text.rstrip())
        if verbose or not is_library_warning(message, filename):
            show(message, category, filename, lineno, file, line)

    try:
        with warnings.catch_warnings():  # restores warnings.showwarning afterwards
            warnings.showwarning = route
            yield log_file
    finally:
        for logger, handlers, propagate, level in saved:
            logger.handlers = handlers
            logger.propagate = propagate
            logger.setLevel(level)
        handler.close()


def quiet_libraries() -> None:
    """Known start-up noise of the libraries, off the console (every command and Ray worker)."""
    # Avalanche imports qpsolvers for GEM, which warns on every start when no QP solver is
    # installed; no strategy of this suite needs one.
    warnings.filterwarnings("ignore", message="no QP solver", category=UserWarning)
    # Brevitas' graph tools (imported by the export) warn that an optional CUDA kernel package
    # is missing; export does not use it.
    warnings.filterwarnings(
        "ignore", message="fast_hadamard_transform package not found", category=UserWarning
    )
    # Brevitas imports torch's extension builder, which logs a CUDA_HOME note on CPU machines.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
