"""The ``glnet`` command group: logging, error reporting, and the commands."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import warnings
from typing import Any, Iterator, Optional, Sequence

import click

from glnet_cli import __version__
from glnet_cli.commands import COMMANDS
from glnet_cli.errors import INTERNAL_ERROR, GlnetError
from glnet_cli.io import gdal_messages
from glnet_cli.openmp import share_cores
from glnet_cli.options import KeyValueType
from glnet_cli.signals import Terminated, install_sigterm

log = logging.getLogger("glnet_cli")


def _show_warning(message: Any, category: type, filename: str, lineno: int,
                  file: Any = None, line: Any = None) -> None:
    click.echo(f"glnet: warning: {message}", err=True)


def _one_line(exc: BaseException) -> str:
    """Errors are one line on stderr, whatever the message a library built."""
    return " ".join(str(exc).split())


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs, completes or shows help.

    The listing in ``glnet --help`` comes from :data:`COMMANDS`, so it imports
    no command (and so no torch or GDAL): start-up stays well under a second.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS) + sorted(set(self.commands) - set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module, _, attribute = COMMANDS[cmd_name][0].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        # A stand-in command per name shortens the stored help exactly as click would.
        rows = [(name, (self.commands.get(name) or click.Command(name, help=COMMANDS[name][1]))
                 .get_short_help_str(limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class GlnetGroup(LazyGroup):
    """Turns glnet's errors into one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GlnetError as exc:
            if ctx.meta.get("glnet.debug"):
                raise
            click.echo(f"glnet: error: {_one_line(exc)}", err=True)
            ctx.exit(exc.exit_code)
        except Terminated as exc:
            click.echo(f"glnet: interrupted ({exc.signal_name})", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("glnet: interrupted", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            if ctx.meta.get("glnet.debug"):
                raise
            click.echo(f"glnet: internal error: {type(exc).__name__}: {_one_line(exc)} "
                       "(run with --debug for the traceback)", err=True)
            ctx.exit(INTERNAL_ERROR)


def versions() -> list[tuple[str, str]]:
    """glnet's version and those of the libraries that shape its results."""
    import importlib.metadata  # here, not at the top: it costs 60 ms at every start

    import rasterio  # GDAL's and PROJ's versions as linked, not as packaged

    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "not installed"
    return [("glnet", __version__), ("torch", torch_version),
            ("GDAL", rasterio.__gdal_version__), ("PROJ", rasterio.__proj_version__)]


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo("\n".join(f"{name} {version}" for name, version in versions()))
        ctx.exit()


@contextlib.contextmanager
def gdal_config(options: Sequence[tuple[str, str]]) -> Iterator[None]:
    """GDAL configuration options for the whole run, as environment variables.

    GDAL falls back on the environment for any option not set otherwise, in
    every thread and in worker processes, whereas ``rasterio.Env`` holds only
    in the thread that entered it; glnet reads and writes from several threads.
    """
    saved = {name: os.environ.get(name) for name, _ in options}
    os.environ.update(dict(options))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@click.group(cls=GlnetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Show glnet's, torch's, GDAL's and PROJ's "
                                            "versions and exit.")
@click.option("--config", "gdal_options", type=KeyValueType(), multiple=True,
              metavar="NAME=VALUE",
              help="GDAL configuration option for this run, e.g. "
                   "GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR or AWS_NO_SIGN_REQUEST=YES; "
                   "repeatable.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
@click.pass_context
def main(ctx: click.Context, gdal_options: tuple[tuple[str, str], ...], verbose: int,
         debug: bool) -> None:
    """Segment ultra-high-resolution GeoTIFFs with GLNet.

    Scenes may be local files or cloud archives GDAL reads piece by piece:
    /vsicurl/https://... and s3://bucket/key (as /vsis3/).

    \b
    Example:
      glnet segment scene.tif -o mask.tif --model model.pt
      glnet vectorize mask.tif -o buildings.gpkg
      glnet --config AWS_NO_SIGN_REQUEST=YES segment s3://bucket/scene.tif -o mask.tif
    """
    ctx.meta["glnet.debug"] = debug
    share_cores()  # before a command imports torch
    ctx.with_resource(gdal_config(gdal_options))
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    warnings.showwarning = _show_warning
    gdal_messages.install(verbose)
    install_sigterm()


if __name__ == "__main__":  # torchrun -m glnet_cli.cli ...
    main()
