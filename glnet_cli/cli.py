"""The ``glnet`` command group: logging, error reporting, and the commands."""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

import click

from glnet_cli import __version__, gdal_messages
from glnet_cli.errors import INTERNAL_ERROR, GlnetError
from glnet_cli.commands import COMMANDS
from glnet_cli.signals import Terminated, install_sigterm

log = logging.getLogger("glnet_cli")


def _show_warning(message: Any, category: type, filename: str, lineno: int,
                  file: Any = None, line: Any = None) -> None:
    click.echo(f"glnet: warning: {message}", err=True)


def _one_line(exc: BaseException) -> str:
    """Errors are one line on stderr, whatever the message a library built."""
    return " ".join(str(exc).split())


class GlnetGroup(click.Group):
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


@click.group(cls=GlnetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="glnet")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
@click.pass_context
def main(ctx: click.Context, verbose: int, debug: bool) -> None:
    """Segment ultra-high-resolution GeoTIFFs with GLNet.

    \b
    Example:
      glnet segment scene.tif -o mask.tif --model model.pt
      glnet vectorize mask.tif -o buildings.gpkg
    """
    ctx.meta["glnet.debug"] = debug
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    warnings.showwarning = _show_warning
    gdal_messages.install(verbose)
    install_sigterm()


for _command in COMMANDS:
    main.add_command(_command)


if __name__ == "__main__":  # torchrun -m glnet_cli.cli ...
    main()
