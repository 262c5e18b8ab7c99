"""The browser explorer (`pdae app`): a Gradio page over pdae.explorer.Explorer.

Gradio is an optional extra (`pip install 'pdae[app]'`); this module imports it, so only `pdae app` imports
this module. User mistakes (a file that is no image, a missing latent DPM, ...) become a message in the
page (gr.Error); the server keeps serving.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from pdae.errors import PdaeError
from pdae.explorer import Explorer
from pdae.images import to_uint8

DISPLAY_WIDTH = 192  # small images are enlarged (nearest neighbour) to about this width
SLIDER_RANGE = 3.0


def picture(image: torch.Tensor) -> np.ndarray:
    """A (C, H, W) image in [-1, 1] as the uint8 array Gradio shows, enlarged when small."""
    pixels = to_uint8(image[None])[0]
    factor = max(1, DISPLAY_WIDTH // pixels.shape[1])
    pixels = pixels.repeat(factor, axis=0).repeat(factor, axis=1)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def pictures(images: torch.Tensor) -> list[np.ndarray]:
    return [picture(image) for image in images]


def shown_errors(handler: Callable) -> Callable:
    """A handler whose user mistakes become a message in the page instead of an error trace."""
    @wraps(handler)
    def run(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except (PdaeError, OSError) as error:
            raise gr.Error(str(error)) from None

    return run


def build_app(explorer: Explorer) -> gr.Blocks:
    """The page: autoencode and edit one image, interpolate two, sample, denoise in one step."""
    def chosen(upload: str | None, example: float | None) -> torch.Tensor:
        if upload:
            return explorer.image_from_file(Path(upload))
        if example is None:
            raise PdaeError("upload an image or give an example index")
        return explorer.example(int(example))

    @shown_errors
    def open_image(upload, example, *scales, progress=gr.Progress()):
        progress(0.1, desc="inverting the image (z and x_T)")
        x0 = chosen(upload, example)
        inferred, random = explorer.reconstructions(x0)
        edited = explorer.edit(x0, dict(zip(explorer.attributes, scales)))
        return x0.numpy(), picture(x0), picture(inferred), pictures(random), picture(edited)

    @shown_errors
    def edit(state, *scales, progress=gr.Progress()):
        if state is None:
            raise PdaeError("open an image first")
        progress(0.1, desc="decoding the edit")
        return picture(explorer.edit(torch.from_numpy(state), dict(zip(explorer.attributes, scales))))

    @shown_errors
    def interpolation(upload_a, example_a, upload_b, example_b, frames, mode, progress=gr.Progress()):
        progress(0.1, desc="inverting both images, then decoding the frames")
        a, b = chosen(upload_a, example_a), chosen(upload_b, example_b)
        return pictures(explorer.interpolation(a, b, int(frames), mode))

    @shown_errors
    def samples(count, seed, progress=gr.Progress()):
        progress(0.1, desc="sampling codes, then decoding them")
        return pictures(explorer.samples(int(count), int(seed)))

    @shown_errors
    def one_step(state, t):
        if state is None:
            raise PdaeError("open an image first (Autoencode and edit)")
        return pictures(explorer.one_step(torch.from_numpy(state), int(t)))

    with gr.Blocks(title="pdae explorer") as app:
        gr.Markdown("# pdae explorer\nA PDAE: semantic code z from the encoder, x_T from inverting the DPM.")
        state = gr.State(None)
        with gr.Tab("Autoencode and edit"):
            with gr.Row():
                upload = gr.File(label="Upload an image", file_types=["image"], type="filepath",
                                 elem_id="upload")
                example = gr.Number(label="or an example index", value=0, precision=0, elem_id="example")
                open_button = gr.Button("Open", elem_id="open")
            with gr.Row():
                shown = gr.Image(label="input", interactive=False, elem_id="input")
                inferred = gr.Image(label="decoded from its inferred x_T", interactive=False,
                                    elem_id="reconstruction")
                random = gr.Gallery(label="z decoded from random x_T", columns=3, height=240, elem_id="random")
            with gr.Row():
                with gr.Column():
                    sliders = [gr.Slider(-SLIDER_RANGE, SLIDER_RANGE, value=0, step=0.1, label=name,
                                         elem_id=f"slider-{i}") for i, name in enumerate(explorer.attributes)]
                    if not sliders:
                        gr.Markdown("No attribute directions: give `pdae app --directions` the file "
                                    "`pdae attributes fit` writes.")
                edited = gr.Image(label="edited (z moved along the directions)", interactive=False,
                                  elem_id="edited")
            outputs = [state, shown, inferred, random, edited]
            open_button.click(open_image, [upload, example, *sliders], outputs)
            upload.upload(open_image, [upload, example, *sliders], outputs)
            for slider in sliders:
                slider.change(edit, [state, *sliders], edited)
        with gr.Tab("Interpolate"):
            with gr.Row():
                upload_a = gr.File(label="image A", file_types=["image"], type="filepath")
                example_a = gr.Number(label="or example A", value=0, precision=0)
                upload_b = gr.File(label="image B", file_types=["image"], type="filepath")
                example_b = gr.Number(label="or example B", value=1, precision=0)
            with gr.Row():
                frames = gr.Slider(3, 12, value=6, step=1, label="frames")
                mode = gr.Radio(["lerp", "trajectory"], value="lerp", label="mode")
                go = gr.Button("Interpolate")
            strip = gr.Gallery(label="A to B", columns=6)
            go.click(interpolation, [upload_a, example_a, upload_b, example_b, frames, mode], strip)
        with gr.Tab("Sample"):
            with gr.Row():
                count = gr.Slider(1, 16, value=8, step=1, label="samples")
                seed = gr.Number(label="seed", value=0, precision=0)
                draw = gr.Button("Sample", elem_id="draw")
            drawn = gr.Gallery(label="latent-DPM codes decoded from random x_T", columns=8, elem_id="samples")
            draw.click(samples, [count, seed], drawn)
        with gr.Tab("One-step denoising"):
            t = gr.Slider(0, explorer.model.schedule.num_timesteps - 1, value=300, step=1, label="t")
            denoise = gr.Button("Denoise the opened image in one step")
            steps = gr.Gallery(label="x_t, the DPM's x0 prediction, PDAE's", columns=3)
            denoise.click(one_step, [state, t], steps)
    return app
