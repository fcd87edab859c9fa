"""Click commands that load what they use when they are used, so that ``rofolio --help`` starts at once.

* ``deferred_options(build)`` is a decorator like ``click.option`` for options made from a registry (the
  architectures' options, the lifetime models, the bug configurations): ``build`` returns ``click.option``
  decorators and runs when the command's parameters are first needed (its help, its parsing, shell
  completion), not when the module that defines the command is imported.  The command must be a
  ``DeferredCommand``; ``LazyGroup`` (and so ``exitstatus.ContractGroup``) makes its commands one.
* ``LazyGroup.add_lazy_command(name, "module:attr", short_help)`` lists a subcommand defined in a module
  that is imported only when the subcommand runs or shows its own help; the group's command list shows
  ``short_help`` (a test checks it against the command's own).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import click

__all__ = ["DeferredCommand", "LazyGroup", "deferred_options"]

OptionDecorator = Callable[[Any], Any]


class _Deferred:
    """A placeholder in a command's parameter list for the options ``build`` makes."""

    def __init__(self, build: Callable[[], list[OptionDecorator]]) -> None:
        self.build = build

    def params(self) -> list[click.Parameter]:
        def holder() -> None:
            pass

        for option in self.build():  # click.option(...) appends its Option to holder.__click_params__
            option(holder)
        return list(getattr(holder, "__click_params__", []))


def deferred_options(build: Callable[[], list[OptionDecorator]]) -> Callable[[Any], Any]:
    """Options made by ``build()`` (``click.option`` decorators, in the order the help lists them), in this
    decorator's place among the command's other options, made when the command first needs them."""

    def decorate(fn: Any) -> Any:
        if isinstance(fn, click.Command):
            fn.params.append(_Deferred(build))  # type: ignore[arg-type]
        else:
            fn.__dict__.setdefault("__click_params__", []).append(_Deferred(build))
        return fn

    return decorate


class DeferredCommand(click.Command):
    """A command whose ``deferred_options`` are made on the first look at its parameters."""

    @property  # type: ignore[override]
    def params(self) -> list[click.Parameter]:
        if any(isinstance(p, _Deferred) for p in self._params):
            self._params = [q for p in self._params
                            for q in (p.params() if isinstance(p, _Deferred) else (p,))]
        return self._params

    @params.setter
    def params(self, value: list[click.Parameter]) -> None:
        self._params = value


class _Elsewhere(click.Command):
    """A subcommand listed by name and short help; the command itself is ``target`` ("module:attr")."""

    def __init__(self, name: str, target: str, short_help: str) -> None:
        super().__init__(name, help=short_help)
        self.target = target

    def load(self) -> click.Command:
        module, _, attr = self.target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command), self.target
        return command


class LazyGroup(click.Group):
    """A group whose commands take ``deferred_options`` and whose subcommands may live elsewhere."""

    command_class = DeferredCommand
    _listing = False

    def add_lazy_command(self, name: str, target: str, short_help: str) -> None:
        """List ``name`` with ``short_help``; import ``target`` ("module:attr") when the command is used."""
        self.commands[name] = _Elsewhere(name, target, short_help)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if isinstance(command, _Elsewhere) and not self._listing:
            command = self.commands[cmd_name] = command.load()
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of the group's help: lazy commands by the short help they were added with."""
        self._listing = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            self._listing = False
