"""`pdae export`: a PDAE run as a Hub-style folder (pdae.export) with a model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from pdae.commands import options as o


def export(
    run: o.Run,
    folder: Annotated[Path, typer.Argument(help="New folder to write (must not exist or be empty).")],
    data: Annotated[str, typer.Option(help="What the PDAE was trained on, for the model card (e.g. 'MNIST "
                                           "train split, 60,000 digits').")] = "not stated",
    evaluation: Annotated[Optional[Path], typer.Option(
        "--eval", help="A `pdae eval` JSON of this run whose table goes into the model card.")] = None,
) -> None:
    """Write a PDAE as a folder the diffusion ecosystem understands (model_index.json, the DPM as a diffusers
    UNet2DModel where its family allows it, a DDIMScheduler config, E and G, the latent DPM if any, a model
    card); load_pdae(FOLDER) and every command read it back."""
    from pdae.backbones import describe_dpm
    from pdae.backbones.adm import LoadedDPM
    from pdae.backbones.black_box import BLACK_BOX
    from pdae.checkpoint import read_progress, resolve_weights_path
    from pdae.errors import PdaeError
    from pdae.evaluation import markdown_table
    from pdae.export import export_pdae
    from pdae.latent import latent_path
    from pdae.model import PDAE, load_pdae

    model = load_pdae(run)
    if not isinstance(model, PDAE):
        raise PdaeError(f"{run} is not a PDAE run: pdae export writes a PDAE around its frozen DPM")
    report = None
    if evaluation is not None:
        if not evaluation.is_file():
            raise PdaeError(f"--eval {evaluation} does not exist: write it with pdae eval {run} -o {evaluation}")
        report = json.loads(evaluation.read_text())
    family = model.to_config()["dpm"].get("backbone", "adm")
    dpm = (describe_dpm(LoadedDPM(family, model.dpm, model.schedule)) if family != BLACK_BOX else
           {"family": "black box (a callable; not stored)"})
    latent = latent_path(Path(run))
    latent_file = resolve_weights_path(latent) if latent.exists() else None
    card = model_card(model, dpm, data, images_seen(Path(run), read_progress(resolve_weights_path(Path(run)))),
                      markdown_table(report) if report else None, latent_file is not None)
    export_pdae(model, folder, card, latent_file)
    o.console.print(f"[green]wrote[/] {folder}: load it with load_pdae('{folder}') or pass it as RUN")


def images_seen(run: Path, progress: dict) -> str:
    """The training images of a run, from its config (a run folder) and its weights' step, when known."""
    config = run / "config.json"
    if run.is_dir() and config.is_file() and "step" in progress:
        batch = json.loads(config.read_text())["train"]["batch_size"]
        return f"{progress['step'] * batch:,}"
    return "not recorded in the weights file"


def model_card(model, dpm: dict[str, str], data: str, seen: str, table: str | None, has_latent: bool) -> str:
    """README.md of an exported PDAE: what it is, what it was trained on, how to use it, its numbers."""
    cfg = model.cfg
    lines = ["# PDAE", "",
             "A PDAE (Zhang, Zhao & Lin, NeurIPS 2022) made with [pdae](https://pypi.org/project/pdae/): an "
             "encoder E and a gradient estimator G trained on a frozen pre-trained diffusion model, which "
             "together make that model an autoencoder with semantic codes z.", "",
             "## Model", "",
             "- frozen DPM: " + ", ".join(f"{k} {v}" for k, v in dpm.items()),
             f"- z: {cfg.latent_dim} numbers; G's z pathway: {cfg.z_pathway}; decoding coefficient: "
             f"{cfg.sampling_coef}; conditioned on: {cfg.condition}",
             f"- latent DPM for sampling: {'included (latent/)' if has_latent else 'none'}", "",
             "## Training", "", f"- data: {data}", f"- images seen: {seen}", "",
             "## Use", "", "```python", "from pdae.model import load_pdae", "",
             "model = load_pdae('THIS_FOLDER')", "```", "",
             "or `pdae reconstruct THIS_FOLDER IMAGES`, `pdae encode THIS_FOLDER IMAGES`, "
             "`pdae sample THIS_FOLDER` and the other commands.", ""]
    lines += ["## Measured", "", table if table else "No evaluation was given at export (`pdae export --eval`).",
              ""]
    return "\n".join(lines)
