"""`pdae app`: the browser explorer on a PDAE run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pdae.autoencode import StepCounts
from pdae.commands import options as o
from pdae.commands.autoencoder import DEFAULT, Refine, open_images


def app(
    run: o.Run = o.SHIPPED_PDAE,
    images: Annotated[Path, typer.Option(help="Example images offered by index (their test split when they "
                                              "have one).")] = o.SHIPPED_MNIST,
    directions: Annotated[Optional[Path], typer.Option(
        help="Attribute directions from `pdae attributes fit`: one slider each.")] = None,
    latent: Annotated[Optional[Path], typer.Option(
        help="The latent DPM for the Sample tab; default: where pdae latent fit puts it.")] = None,
    steps: Annotated[int, typer.Option(min=1, help="DDIM steps of the inversion and of every decoding.")] = (
        DEFAULT.decoding),
    refine: Refine = DEFAULT.refine,
    host: Annotated[str, typer.Option(help="Address to serve on; 127.0.0.1 keeps it on this machine.")] = (
        "127.0.0.1"),
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 7860,
    share: Annotated[bool, typer.Option(help="Ask Gradio for a public share link (off unless asked).")] = False,
    device: o.Device = None,
    threads: o.Threads = None,
) -> None:
    """Serve an interactive explorer in the browser: reconstruct an image, drag attribute sliders,
    interpolate two images, sample, denoise in one step. Needs `pip install 'pdae\\[app]'`."""
    from pdae.errors import PdaeError

    try:
        from pdae.app import build_app
    except ImportError as error:
        raise PdaeError(f"pdae app needs Gradio: pip install 'pdae\\[app]' ({error})") from None
    explorer = open_explorer(run, images, directions, latent, StepCounts(steps, steps, refine=refine),
                             o.prepare_runtime(threads, device))
    if directions is None:
        o.console.print("no --directions: the page has no attribute sliders (pdae attributes fit writes them)")
    try:
        served = build_app(explorer).queue()
        served.launch(server_name=host, server_port=port, share=share, inbrowser=False)
    except OSError as error:
        raise PdaeError(f"cannot serve on {host}:{port} ({error}): pick another --port") from None


def open_explorer(run: Path, images: Path, directions: Path | None, latent: Path | None, steps: StepCounts,
                  device):
    """The Explorer `pdae app` serves: the run on `device`, its latent DPM when it has one."""
    from pdae.attributes import AttributeDirections
    from pdae.checkpoint import resolve_weights_path
    from pdae.errors import CheckpointError
    from pdae.explorer import Explorer
    from pdae.latent import open_latent_dpm
    from pdae.model import load_pdae

    model = load_pdae(run).to(device)
    try:
        latent_dpm = open_latent_dpm(run, latent, model, device)
    except CheckpointError:
        if latent is not None:
            raise
        latent_dpm = None
    found = AttributeDirections.load(resolve_weights_path(directions)) if directions else None
    return Explorer(model, steps, found, latent_dpm, open_images(images, model, "test", 1000))
