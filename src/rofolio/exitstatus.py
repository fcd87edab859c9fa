"""How every rofolio command ends: its exit status and what it prints on stderr.

One contract for every command (docs/errors.md has it with examples):

====  ==========================================================================
0     ok
1     a check failed (a scenario's ``expect``, the kernel against the model);
      the command ends with one summary line: ``rofolio: 2 expectation(s)
      failed in 1 of 6 runs``
2     bad input: ``rofolio: error: FILE:LINE: what was wrong`` per problem
      (``command line:`` for a mistake in the arguments), each followed by at
      most two ``rofolio: hint: ...`` lines
3     internal error: ``rofolio: internal error: Type: message (traceback saved
      to PATH)``; the traceback goes to a file, never to the terminal
4     the environment failed: a missing tool or package, an unwritable path, a
      guest that timed out, a failed build; one ``rofolio: error:`` line
130   interrupted (Ctrl-C): ``rofolio: interrupted``
141   stdout was closed (``rofolio scenarios | head -1``): nothing on stderr
====  ==========================================================================

``ContractGroup`` applies it: a click group whose ``invoke`` turns whatever a
command (or a sub-group's command) raises into that status and those lines, so
a command only raises: ``RofolioError`` (its ``exit_status`` says 2 or 4),
``ChecksFailed`` for status 1, anything else is an internal error.
"""

from __future__ import annotations

import codecs
import errno
import io
import os
import sys
from enum import IntEnum
from pathlib import Path
from typing import Any, NoReturn

import click

from rofolio.errors import ChecksFailed, EnvironmentFailure, RofolioError
from rofolio.lazycli import LazyGroup

__all__ = [
    "EPILOG",
    "PROG",
    "ContractGroup",
    "ExitStatus",
    "StdoutFailure",
    "contract_console",
    "end",
    "expectations_failed",
    "hint_lines",
    "report",
    "traceback_dirs"
]

PROG = "rofolio"


class ExitStatus(IntEnum):
    """The exit status of a rofolio command."""

    OK = 0
    FAILED = 1  # an expectation or a comparison failed
    USAGE = 2  # bad input: the arguments or a scenario file
    INTERNAL = 3  # a bug in rofolio
    ENVIRONMENT = 4  # a missing tool, an unwritable path, a guest that timed out
    INTERRUPTED = 130  # 128 + SIGINT
    BROKEN_PIPE = 141  # 128 + SIGPIPE: whoever read stdout stopped reading


EPILOG = ("Exit status: 0 ok; 1 an expectation failed (one closing summary line); 2 bad input "
          "(`rofolio: error: FILE:LINE: ...` and hints); 3 internal error (traceback saved under "
          "~/.cache/rofolio/); 4 the environment failed (a missing tool, an unwritable path); "
          "130 interrupted; 141 stdout was closed before the output ended (`rofolio scenarios | head -1`), "
          "nothing on stderr.  See docs/errors.md.")


def expectations_failed(failures: int, failed_runs: int, runs: int) -> ChecksFailed:
    """``2 expectation(s) failed in 1 of 6 runs``."""
    return ChecksFailed(f"{failures} expectation(s) failed in {failed_runs} of {runs} run{'' if runs == 1 else 's'}")


# The few symbols rofolio prints, spelled for an output whose encoding cannot hold them (PYTHONIOENCODING=ascii,
# a latin-1 terminal); anything else becomes its decomposed ASCII letters, or "?"
ASCII_STAND_INS = {"→": "->", "✓": "ok", "✗": "x", "−": "-", "…": "...", "·": "-", "×": "x", "≤": "<=", "≥": ">="}


def _ascii_stand_ins(err: UnicodeError) -> tuple[str, int]:
    if not isinstance(err, UnicodeEncodeError):
        raise err
    import unicodedata  # only when a character cannot be written: not at every start-up

    text = err.object[err.start:err.end]
    return "".join(ASCII_STAND_INS.get(c) or unicodedata.normalize("NFKD", c).encode("ascii", "ignore").decode()
                   or "?" for c in text), err.end


def spell_unencodable() -> None:
    """Have stdout and stderr write a character their encoding lacks as an ASCII stand-in, not fail with
    UnicodeEncodeError (an internal error by the contract): the output is text for a person or a script, and
    its encoding is the user's choice."""
    codecs.register_error("rofolio-ascii", _ascii_stand_ins)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="rofolio-ascii")


class ContractGroup(LazyGroup):
    """A click group whose commands, and the commands of its sub-groups, all end by the contract above (a
    ``LazyGroup``: its commands may take ``deferred_options`` and live in modules imported when used)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        if parent is not None:  # the parent's invoke() reports it
            return super().make_context(info_name, args, parent, **extra)
        spell_unencodable()
        try:
            return super().make_context(info_name, args, parent, **extra)
        except (click.exceptions.Exit, SystemExit):
            raise
        except BaseException as err:  # a mistake in the group's own options
            end(err)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            finally:
                if ctx.parent is None:  # a full or closed stdout is reported here, not at interpreter exit
                    _flush_or_raise()
        except (click.exceptions.Exit, SystemExit):
            raise
        except BaseException as err:
            end(err)


def end(err: BaseException) -> NoReturn:
    """Print what ``err`` means by the contract and exit with its status."""
    sys.exit(report(err))


def report(err: BaseException) -> ExitStatus | int:
    """Print the lines the contract has for ``err`` on stderr; return the exit status."""
    stdout_err = _flush_stdout()  # what went to stdout comes before the lines on stderr
    if _is_closed_pipe(err) or _is_closed_pipe(stdout_err):
        _silence_stdout()
        return ExitStatus.BROKEN_PIPE
    if stdout_err is not None:  # a full disk, /dev/full: the output is lost, whatever else happened
        err = StdoutFailure(f"cannot write to standard output: {stdout_err.strerror or stdout_err}")
    if isinstance(err, StdoutFailure):
        _silence_stdout()  # or the interpreter fails to flush it again at exit
    if isinstance(err, KeyboardInterrupt | click.exceptions.Abort):
        _say("interrupted")
        return ExitStatus.INTERRUPTED
    if isinstance(err, ChecksFailed):
        _say(err.summary)
        return ExitStatus.FAILED
    if isinstance(err, RofolioError):
        for message, hint in err.problems():
            _error(message, hint)
        return err.exit_status
    if isinstance(err, click.exceptions.NoArgsIsHelpError):
        err.show()
        return ExitStatus.USAGE
    if isinstance(err, click.UsageError):
        hint = f"see '{err.ctx.command_path} --help'" if err.ctx is not None else ""
        _error("command line: " + " ".join(err.format_message().split()), hint)  # click's choice lists span lines
        return err.exit_code
    if isinstance(err, click.ClickException):
        _error(err.format_message())
        return err.exit_code
    if isinstance(err, OSError):
        _error(*_describe_os_error(err))
        if err.filename is None:  # most likely stdout itself: do not fail again at interpreter exit
            _silence_stdout()
        return ExitStatus.ENVIRONMENT
    _say(f"internal error: {_one_line(err)} ({_save_traceback(err)})")
    return ExitStatus.INTERNAL


def _say(text: str) -> None:
    click.echo(f"{PROG}: {text}", err=True)


def _error(message: str, hint: str = "") -> None:
    """One ``rofolio: error:`` line per line of the message, then at most two ``rofolio: hint:`` lines."""
    for line in [line.strip() for line in message.splitlines() if line.strip()] or [""]:
        _say(f"error: {line}")
    for line in hint_lines(hint):
        _say(f"hint: {line}")


def hint_lines(hint: str) -> list[str]:
    """A hint as at most two lines: split once at the first ``; `` outside parentheses (``(a; b)`` stays whole)."""
    text = "; ".join(part.strip() for part in hint.splitlines() if part.strip())
    depth = 0
    for at, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth <= 0 and text.startswith("; ", at):
            return [part.strip() for part in (text[:at], text[at + 2:]) if part.strip()]
    return [text.strip()] if text.strip() else []


def _one_line(err: BaseException) -> str:
    message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def _describe_os_error(err: OSError) -> tuple[str, str]:
    reason = err.strerror or str(err)
    if err.filename is not None:
        target = os.fsdecode(err.filename)
        return f"{target}: {reason}", "check that the path exists, is writable and has space"
    if err.errno in (errno.ENOSPC, errno.EIO, errno.EFBIG, errno.EDQUOT):
        return f"cannot write to standard output: {reason}", ""
    return reason, ""


def _is_closed_pipe(err: BaseException | None) -> bool:
    return isinstance(err, OSError) and err.errno == errno.EPIPE


class StdoutFailure(EnvironmentFailure):
    """Standard output cannot be written (a full disk, /dev/full); a closed pipe is not this, it ends quietly."""


_console_class: type | None = None


def contract_console(**kwargs: Any) -> Any:
    """A rich ``Console`` (same arguments) whose closed stdout ends the command like any other: rich's own
    ``on_broken_pipe()`` exits with status 1, this one raises ``BrokenPipeError`` for ``report()`` (141).
    Every command that prints through rich makes its console here (rich is imported when first needed)."""
    global _console_class
    if _console_class is None:
        from rich.console import Console

        class ContractConsole(Console):
            def on_broken_pipe(self) -> None:
                self.quiet = True  # nothing more from this console; report() silences stdout itself
                raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

        _console_class = ContractConsole
    return _console_class(**kwargs)


def _flush_or_raise() -> None:
    err = _flush_stdout()
    if err is not None and not _is_closed_pipe(err):
        raise StdoutFailure(f"cannot write to standard output: {err.strerror or err}") from err
    if err is not None:
        raise err


def _flush_stdout() -> OSError | None:
    """Flush stdout; the error if that failed (EPIPE: whoever read it has gone; ENOSPC: /dev/full)."""
    try:
        sys.stdout.flush()
    except OSError as err:
        return err
    except ValueError:  # already closed
        pass
    return None


def _silence_stdout() -> None:
    """Python's recipe for SIGPIPE (docs.python.org/3/library/signal.html#note-on-sigpipe): point stdout at
    /dev/null so that the interpreter's final flush cannot fail and print "Exception ignored"."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):  # not a real file (click's CliRunner, a StringIO)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def traceback_dirs() -> list[Path]:
    """Where a traceback is saved, in order of preference: $XDG_CACHE_HOME/rofolio (or ~/.cache/rofolio),
    then the system temp directory."""
    cache = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(cache) if os.path.isabs(cache) else Path.home() / ".cache"
    import tempfile  # here, not at start-up: only an internal error needs it

    return [base / PROG, Path(tempfile.gettempdir())]


def _save_traceback(err: BaseException) -> str:
    """Write the full traceback to a file; the parenthesised remark that says where (or why not)."""
    import traceback
    from datetime import datetime

    name = f"{PROG}-traceback-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.txt"
    text = (f"{PROG} {_version()}; python {sys.version.split()[0]}; argv {sys.argv!r}\n\n"
            + "".join(traceback.format_exception(err)))
    problem = ""
    for folder in traceback_dirs():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(text)
        except OSError as write_err:
            problem = write_err.strerror or str(write_err)
            continue
        return f"traceback saved to {path}"
    return f"the traceback could not be saved: {problem}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PROG)
    except PackageNotFoundError:
        return "(not installed)"
