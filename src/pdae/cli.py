"""The `pdae` command line: one entry point, one sub-command per task."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable

import typer

from pdae.commands import autoencoder, dpm, editing, explore, hub, latent
from pdae.commands.options import console
from pdae.errors import PdaeError

app = typer.Typer(
    help="Turn a pre-trained diffusion model into an autoencoder and representation learner (PDAE).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
for command in (autoencoder.demo, dpm.pretrain, dpm.sample, autoencoder.fit, autoencoder.encode,
                autoencoder.reconstruct, autoencoder.gap, autoencoder.denoise_one_step, autoencoder.evaluate,
                editing.interpolate, editing.manipulate, latent.fewshot, dpm.inspect_dpm, hub.export, explore.app):
    app.command(name=command.__name__.replace("_", "-").replace("evaluate", "eval"))(command)
app.add_typer(editing.attributes_app, name="attributes")
app.add_typer(latent.latent_app, name="latent")


def summarise_commands(group: typer.Typer) -> None:
    """Give every command of `group` (and of its sub-groups) its docstring's first paragraph as a one-line
    summary: typer's rich help keeps the docstring's line breaks in a list of commands."""
    for info in group.registered_commands:
        if info.short_help is None and info.callback is not None and info.callback.__doc__:
            info.short_help = " ".join(inspect.cleandoc(info.callback.__doc__).split("\n\n")[0].split())
    for sub_group in group.registered_groups:
        summarise_commands(sub_group.typer_instance)


summarise_commands(app)


def run_reporting_errors(entry: Callable[[], object]) -> None:
    """Run a command: user mistakes end with a one-line message and exit code 2, not a traceback."""
    try:
        entry()
    except PdaeError as error:
        console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: a training run continues with --resume")
        sys.exit(130)


def main() -> None:
    """The `pdae` entry point."""
    run_reporting_errors(app)
