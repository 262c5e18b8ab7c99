"""Hub-style folders: a PDAE laid out the way diffusion models travel, and read back from that layout.

    FOLDER/model_index.json        what is where (diffusers' pipeline index, with pdae's own entries)
    FOLDER/unet/                   the frozen DPM as a diffusers UNet2DModel folder, when it is one
    FOLDER/dpm/dpm.safetensors     otherwise (pdae's ADM UNet: no UNet2DModel has its layout)
    FOLDER/scheduler/              the training schedule as a DDIMScheduler config (trailing spacing, the
                                   betas exact, no clipping: the sampler pdae decodes with)
    FOLDER/pdae/                   E and G (safetensors, the PDAE config in its metadata) and config.json
    FOLDER/latent/                 the latent DPM, when the run has one (so `pdae sample FOLDER` works)
    FOLDER/README.md               a model card: the DPM, the data, the images seen, the measured numbers

A black-box DPM is not written (there are no weights to write): load such a folder with its callable.
Nothing here uses the network; uploading is left to the user's own tools.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from torch import Tensor, nn

from pdae import __version__
from pdae.backbones import load_dpm
from pdae.backbones.diffusers_folder import DIFFUSERS
from pdae.checkpoint import load_weights, save_weights
from pdae.errors import PdaeError
from pdae.schedule import NoiseSchedule

INDEX = "model_index.json"
PARTS = "pdae"
PARTS_WEIGHTS = "model.safetensors"


def is_exported(path: Path) -> bool:
    """Whether `path` is a folder `export_pdae` wrote."""
    return (Path(path) / INDEX).is_file() and (Path(path) / PARTS / PARTS_WEIGHTS).is_file()


def scheduler_config(schedule: NoiseSchedule, prediction_type: str = "epsilon") -> dict:
    """The schedule as diffusers' DDIMScheduler config: the betas exactly, ending at alpha_bar = 1."""
    return {"_class_name": "DDIMScheduler", "num_train_timesteps": schedule.num_timesteps,
            "trained_betas": schedule.betas.tolist(), "beta_schedule": "linear", "clip_sample": False,
            "set_alpha_to_one": True, "steps_offset": 0, "prediction_type": prediction_type,
            "timestep_spacing": "trailing", "rescale_betas_zero_snr": False}


def export_pdae(model: nn.Module, folder: Path, card: str, latent: Path | None = None) -> None:
    """Write `model` (a PDAE) to `folder` in the layout above, with the model card text `card`."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise PdaeError(f"{folder} is not empty: export into a new folder")
    config = model.to_config()
    family = config["dpm"].get("backbone", "adm")
    index = {"_class_name": "PDAEPipeline", "_pdae_version": __version__,
             "scheduler": ["diffusers", "DDIMScheduler"], PARTS: ["pdae", "PDAE encoder and gradient estimator"]}
    if family == DIFFUSERS:
        model.dpm.unet.save_pretrained(folder / "unet", safe_serialization=True)
        index["unet"] = ["diffusers", "UNet2DModel"]
    elif family == "adm":
        save_weights(folder / "dpm" / "dpm.safetensors", model.dpm.state_dict(), model.dpm.to_config(model.schedule))
        index["dpm"] = ["pdae", "ADM UNet"]
    else:
        index["dpm"] = ["black box", "not stored: load with the same callable"]
    prediction_type = getattr(model.dpm, "prediction_type", "epsilon")
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(scheduler_config(model.schedule, prediction_type), indent=2))
    parts = {k: v for k, v in model.state_dict().items() if not k.startswith("dpm.")}
    save_weights(folder / PARTS / PARTS_WEIGHTS, parts, config)
    (folder / PARTS / "config.json").write_text(json.dumps(config["pdae"], indent=2))
    if latent is not None:
        index["latent"] = ["pdae", "latent DPM"]
        (folder / "latent").mkdir()
        shutil.copyfile(latent, folder / "latent" / "ema.safetensors")
    (folder / INDEX).write_text(json.dumps(index, indent=2))
    (folder / "README.md").write_text(card)


def read_exported(folder: Path) -> tuple[dict[str, Tensor], dict]:
    """(state dict, config) of an exported PDAE, as `load_weights` gives them for a run's weights file."""
    folder = Path(folder)
    state, config = load_weights(folder / PARTS / PARTS_WEIGHTS)
    dpm_source = next((p for p in (folder / "unet", folder / "dpm" / "dpm.safetensors") if p.exists()), None)
    if dpm_source is not None:
        dpm, _ = load_dpm(dpm_source)
        state.update({f"dpm.{k}": v.float() if v.is_floating_point() else v for k, v in dpm.state_dict().items()})
    return state, config

