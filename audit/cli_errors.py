"""How the command line reports errors: each becomes a click exception that prints one
line, `audit: error: …`, and exits with the code its class carries (SPEC §7)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import IO, Any, TypeVar

import click

__all__ = [
    "BadInput",
    "CliError",
    "FindingsFailed",
    "InternalError",
    "Interrupted",
    "SalesforceUnreachable",
    "friendly_errors",
]

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """One line on stderr, ``audit: error: …``, naming what to fix. Subclasses set the
    exit code (SPEC §7)."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"audit: error: {self.format_message()}", err=True)


class FindingsFailed(CliError):
    """Findings at or above `[run] fail_on`."""

    exit_code = 1


class BadInput(CliError):
    """Bad or missing configuration or input, or a store that cannot be used."""

    exit_code = 2


class SalesforceUnreachable(CliError):
    """Salesforce unreachable, or the login refused."""

    exit_code = 3


class InternalError(CliError):
    """An error nobody planned for: a bug (never exit 1, which means findings)."""

    exit_code = 4


class Interrupted(CliError):
    """Ctrl-C: the conventional 128 + SIGINT."""

    exit_code = 130

    def __init__(self) -> None:
        super().__init__("interrupted")

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo("audit: interrupted", err=True)


_BY_CODE: dict[int, type[CliError]] = {1: CliError, 2: BadInput, 3: SalesforceUnreachable}


def _cli_error(message: str, code: int) -> CliError:
    """The CliError for an exit code (a new code gets its own subclass, never a wrong one)."""
    cls: type[CliError] = _BY_CODE.get(code) or type("CliError", (CliError,), {"exit_code": code})
    return cls(message)


def _exit_code_of(exc: BaseException) -> int | None:
    """The exit code an error of ours carries (`AuditError`, `ConnectorError`, … set an
    int `exit_code` class attribute); None for anything else."""
    code = getattr(type(exc), "exit_code", None)
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def friendly_errors(fn: F) -> F:
    """Turn errors into `CliError`: one line on stderr instead of a traceback
    (AWU_AUDIT_DEBUG=1 shows the traceback of an unexpected error)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            raise Interrupted() from None
        except Exception as exc:
            code = _exit_code_of(exc)
            if code is not None:
                raise _cli_error(str(exc), code) from None
            if os.environ.get("AWU_AUDIT_DEBUG"):
                raise
            raise InternalError(
                f"unexpected {type(exc).__name__}: {exc} (set AWU_AUDIT_DEBUG=1 for details)"
            ) from None

    return wrapper  # type: ignore[return-value]
