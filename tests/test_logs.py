"""One logging setup for every command: the handlers, the one-line masked format, serve's INFO on stderr."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from xccel_cli import logs
from xccel_cli.errors import ConfigError


@pytest.fixture(autouse=True)
def reset() -> Iterator[None]:
    yield
    logs.configure()  # back to the defaults for whatever runs next in this process


def test_configuring_again_replaces_the_handlers(tmp_path: Path) -> None:
    log_file = tmp_path / "x.log"
    for _ in range(3):
        logs.configure(verbose=1, log_file=str(log_file))
    for name in ("xccel_cli", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        ours = [handler for handler in logger.handlers if type(handler).__name__ != "LogCaptureHandler"]  # not pytest's
        assert len(ours) == 2 and not logger.propagate, name  # stderr and the file, once each
    logging.getLogger("uvicorn.error").info("from the server")
    logging.getLogger("xccel_cli.web.runtime").info("from the core")
    written = log_file.read_text().splitlines()
    assert [line.split(": ", 1)[1] for line in written] == ["from the server", "from the core"]


def test_lines_are_single_and_masked_with_no_traceback(tmp_path: Path) -> None:
    log_file = tmp_path / "x.log"
    logs.configure(log_file=str(log_file))
    log = logging.getLogger("xccel_cli.test")
    try:
        raise RuntimeError("cannot reach postgresql://me:hunter2@db/shop\nsecond line")
    except RuntimeError:
        log.exception("failed on %s", "postgresql://me:hunter2@db/shop")
    text = log_file.read_text()
    assert "hunter2" not in text and "Traceback" not in text
    assert len(text.splitlines()) == 1 and "(RuntimeError: cannot reach postgresql://me:***@db/shop)" in text


def test_serve_shows_info_on_stderr_unless_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure()
    logging.getLogger("xccel_cli.x").info("hidden")
    logs.serving()
    logging.getLogger("xccel_cli.x").info("serving http://127.0.0.1:1")
    logs.configure(quiet=True)
    logs.serving()
    logging.getLogger("xccel_cli.x").warning("quiet means quiet")
    assert capsys.readouterr().err.splitlines() == ["xccel: serving http://127.0.0.1:1"]


def test_a_log_file_that_cannot_be_opened_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open the log file"):
        logs.configure(log_file=str(tmp_path / "missing" / "x.log"))
