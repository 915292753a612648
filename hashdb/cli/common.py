"""What every CLI command shares: opening the database, who it acts as, how it prints.

A command acts as a member (`--as NAME`, or the first enabled admin): the use cases
check that member's role, and the audit log records it with a request id of the
form `cli-<32 hex digits>`, so an entry made from the command line says so.

Output: every leaf command takes `--json` and `--quiet`/`-q` through `OUTPUT`,
which hands the command one `Output` (parameter `out`) and nothing else:

- default: text for a person on stdout, warnings and progress bars on stderr;
- `--json`: the command's result as one JSON document on stdout (a streaming
  command, `remote export`, prints one JSON object per line), no progress bar;
- `--quiet`: nothing on stdout and no warnings or progress; errors still go to
  stderr, and the exit code says how it went;
- `--json --quiet`: the JSON result only (a script asked for it), nothing else.

Errors are never the printer's business: a HashdbError raised by a command is
rendered once, on stderr, with its exit code, by `hashdb.cli._Group`; a row that
failed inside a batch is reported by `Output.error` (stderr, even with --quiet)
or inside the JSON result, and the command exits EXIT_PARTIAL.
"""

from __future__ import annotations

import functools
import json
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from hashdb.consortium import Actor, Consortium
from hashdb.settings import load_settings

T = TypeVar("T")

# Exit code when some items of a batch failed (each is reported) and the rest succeeded.
EXIT_PARTIAL = 1

# Batches longer than this show a progress bar on stderr.
PROGRESS_FROM = 20

# The option of the commands that manage the consortium (members, keys, audit).
AS_ADMIN = click.option(
    "--as", "as_member", help="Admin member to act as (default: the first enabled admin)."
)


@dataclass(frozen=True)
class Output:
    """How one run of a command prints: as JSON, as text, or nothing but errors."""

    as_json: bool = False
    quiet: bool = False

    @property
    def human(self) -> bool:
        """Whether text for a person (and progress bars, and warnings) is wanted."""
        return not self.as_json and not self.quiet

    def result(self, value: Any, text: Iterable[str] | Callable[[], Iterable[str]] = ()) -> None:
        """Print the command's result: `value` as JSON with --json, else the lines of
        `text` (a callable is only called when text is wanted), else nothing."""
        if self.as_json:
            emit_json(value)
        elif not self.quiet:
            for line in text() if callable(text) else text:
                click.echo(line)

    def say(self, line: str) -> None:
        """One line of text for a person on stdout (not with --json or --quiet)."""
        if self.human:
            click.echo(line)

    def warn(self, line: str) -> None:
        """A warning on stderr; --quiet silences it (--json alone does not)."""
        if not self.quiet:
            click.echo(line, err=True)

    def error(self, line: str) -> None:
        """One failed item of a batch, on stderr, whatever the output mode."""
        click.echo(line, err=True)


def OUTPUT(command: Callable[..., T]) -> Callable[..., T]:  # noqa: N802 (reads as an option)
    """The `--json` and `--quiet`/`-q` options; the command receives `out: Output`.

    Put it with the other options, under `@click.command()`:

        @click.command()
        @click.argument("name")
        @OUTPUT
        def show(name: str, out: Output) -> None:
            out.result({"name": name}, [f"name {name}"])
    """

    @functools.wraps(command)
    def with_output(*args: Any, as_json: bool, quiet: bool, **kwargs: Any) -> T:
        return command(*args, out=Output(as_json=as_json, quiet=quiet), **kwargs)

    options = (
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
        click.option("--quiet", "-q", "quiet", is_flag=True, help="Print nothing but errors."),
    )
    decorated: Callable[..., T] = with_output
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


def open_db() -> Consortium:
    return Consortium.open(load_settings())


def acting(db: Consortium, name: str | None) -> Actor:
    """Who a command acts as: the member named, or the first enabled admin (NotFound,
    exit 2, if there is none), with a request id of this run (`cli-<hex>`)."""
    return Actor(db.members.operator(name), request_id=f"cli-{uuid.uuid4().hex}")


def progress(items: list[T], label: str, enabled: bool) -> Iterator[T]:
    if not enabled or len(items) < PROGRESS_FROM:
        yield from items
        return
    with click.progressbar(items, label=label, file=sys.stderr, show_pos=True) as bar:
        yield from bar


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def any_failed(rows: Iterable[dict[str, Any]]) -> bool:
    return any("error" in r for r in rows)
