"""The command line end to end on tiny models: help texts, pretrain -> sample, resume, user errors."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from rich.markup import render
from safetensors.torch import load_file
from typer.testing import CliRunner

from pdae.checkpoint import read_progress
from pdae.cli import app
from pdae.commands.options import SHIPPED_DPM, parse_count
from pdae.errors import DataError

runner = CliRunner()
COMMANDS = ["demo", "pretrain", "sample", "fit", "encode", "reconstruct", "gap", "denoise-one-step", "eval",
            "interpolate", "attributes fit", "manipulate", "latent fit", "fewshot", "export", "app"]
MODEL_COMMANDS = [c for c in COMMANDS if c != "export"]  # export only copies weights: no --device


@pytest.fixture
def digits_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "digits.npz"
    np.savez(path, images=rng.integers(0, 256, (32, 8, 8), dtype=np.uint8), labels=np.arange(32) % 4)
    return path


def pdae(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pdae", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_help_explains_itself(command):
    result = runner.invoke(app, [*command.split(), "--help"] if command else ["--help"])
    assert result.exit_code == 0
    assert len(result.output) > 200
    if command is None:
        assert all(name.split()[0] in result.output for name in COMMANDS)


@pytest.mark.parametrize("group", [[], ["attributes"], ["latent"]])
def test_command_lists_give_each_command_its_whole_summary_on_one_line(group):
    """A wide terminal shows each command's first docstring paragraph unbroken (typer keeps its line breaks)."""
    result = runner.invoke(app, [*group, "--help"], env={"COLUMNS": "400"})
    rows = [" ".join(line.strip("│ ").split()) for line in result.output.splitlines()]
    sub_groups = {info.name: info.typer_instance for info in app.registered_groups}
    listed = sub_groups[group[0]].registered_commands if group else app.registered_commands
    for info in listed:
        name = info.name or info.callback.__name__.replace("_", "-")
        summary = render(" ".join(info.callback.__doc__.split("\n\n")[0].split())).plain  # as rich shows it
        assert f"{name} {summary}" in rows, (name, summary)


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_every_model_command_takes_a_device(command):
    result = runner.invoke(app, [*command.split(), "--help"])
    assert "--device" in result.output


def test_parse_count():
    assert [parse_count(s) for s in ("60000", "500k", "2M", "1e6", "1.5k")] == [
        60000, 500000, 2000000, 10**6, 1500]
    with pytest.raises(Exception, match="not a count"):
        parse_count("lots")


def test_pretrain_then_sample_then_resume(tmp_path, digits_npz):
    run = tmp_path / "run"
    common = ["--data", str(digits_npz), "--image-size", "8", "--preset", "tiny", "--batch-size", "8",
              "--threads", "1", "--checkpoint-every", "16"]
    result = runner.invoke(app, ["pretrain", "--out", str(run), "--images", "32", *common])
    assert result.exit_code == 0, result.output
    assert (run / "ema.safetensors").is_file() and (run / "config.json").is_file()

    result = runner.invoke(app, ["pretrain", "--out", str(run), "--images", "48", "--resume", *common])
    assert result.exit_code == 0, result.output

    grid, npz = tmp_path / "s.png", tmp_path / "s.npz"
    result = runner.invoke(app, ["sample", "--dpm", str(run), "-n", "5", "--steps", "3", "-o", str(grid),
                                 "--npz", str(npz), "--sampler", "ddpm"])
    assert result.exit_code == 0, result.output
    samples = np.load(npz)["samples"]
    assert samples.shape == (5, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    assert grid.stat().st_size > 0
    # the bar follows the 3 sampling steps of the one batch (1, 3, 5 of 5 images), not only its end
    assert "sampling: 3/5" in result.output


def test_pretrain_min_snr_is_recorded_and_kept_on_resume(tmp_path, digits_npz):
    run = tmp_path / "run"
    common = ["--data", str(digits_npz), "--image-size", "8", "--preset", "tiny", "--batch-size", "8",
              "--threads", "1"]
    result = runner.invoke(app, ["pretrain", "--out", str(run), "--images", "16", "--min-snr", "5", *common])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["loss"] == {"min_snr": 5.0}

    result = runner.invoke(app, ["pretrain", "--out", str(run), "--images", "24", "--resume", "--min-snr", "1",
                                 *common])
    assert "with the loss it was started with" in str(result.exception)
    assert "--min-snr 1.0 (the run has 5.0)" in str(result.exception)
    result = runner.invoke(app, ["pretrain", "--out", str(run), "--images", "24", "--resume", *common])
    assert result.exit_code == 0, result.output
    assert read_progress(run / "ema.safetensors")["step"] == 3


def test_pretrain_init_continues_from_a_dpm_with_its_architecture(tmp_path, digits_npz):
    first, second = tmp_path / "first", tmp_path / "second"
    common = ["--data", str(digits_npz), "--batch-size", "8", "--threads", "1"]
    result = runner.invoke(app, ["pretrain", "--out", str(first), "--images", "16", "--image-size", "8",
                                 "--preset", "tiny", *common])
    assert result.exit_code == 0, result.output

    # No --preset or --image-size: the architecture is the initial DPM's (tiny at 8 px), not the defaults.
    result = runner.invoke(app, ["pretrain", "--out", str(second), "--init", str(first / "ema.safetensors"),
                                 "--images", "8", "--lr", "1e-9", *common])
    assert result.exit_code == 0, result.output
    saved = json.loads((second / "config.json").read_text())["model"]["unet"]
    assert (saved["image_size"], saved["model_channels"]) == (8, 32)
    start, after = load_file(first / "ema.safetensors"), load_file(second / "ema.safetensors")
    assert after.keys() == start.keys()
    assert all(torch.allclose(after[k], start[k], atol=1e-6) for k in start)  # random weights would differ


def test_user_errors_give_a_message_and_exit_code_2_without_traceback(tmp_path):
    result = pdae("sample", "--dpm", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert "no checkpoint at" in result.stderr and "Traceback" not in result.stderr

    result = pdae("pretrain", "--out", str(tmp_path / "r"), "--data", str(tmp_path / "nothing-here"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r" / "ema.safetensors").exists()


@pytest.fixture(scope="module")
def tiny_pdae_run(tmp_path_factory):
    """A tiny DPM on 8x8 digits-like data, and a PDAE fitted on it for a few steps by `pdae fit`."""
    root = tmp_path_factory.mktemp("pdae")
    rng = np.random.default_rng(1)
    data = root / "data.npz"
    np.savez(data, images=rng.integers(0, 256, (24, 8, 8), dtype=np.uint8), labels=np.arange(24) % 3)
    result = runner.invoke(app, ["pretrain", "--out", str(root / "dpm"), "--data", str(data),
                                 "--image-size", "8", "--preset", "tiny", "--images", "16",
                                 "--batch-size", "8", "--threads", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["fit", "--dpm", str(root / "dpm"), "--out", str(root / "pdae"),
                                 "--data", str(data), "--latent-dim", "8", "--images", "16",
                                 "--batch-size", "8", "--threads", "1"])
    assert result.exit_code == 0, result.output
    return root / "pdae", data


def test_fit_with_gradient_checkpointing_trains_the_same_weights(tiny_pdae_run, tmp_path, monkeypatch):
    import pdae.model

    calls = []
    real = pdae.model.checkpoint
    monkeypatch.setattr(pdae.model, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    run, data = tiny_pdae_run
    result = runner.invoke(app, ["fit", "--dpm", str(run.parent / "dpm"), "--data", str(data), "--latent-dim", "8",
                                 "--images", "16", "--batch-size", "8", "--threads", "1",
                                 "--out", str(tmp_path / "checkpointed"), "--gradient-checkpointing"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 2  # one per training step: G ran checkpointed
    plain, checkpointed = (load_file(folder / "ema.safetensors") for folder in (run, tmp_path / "checkpointed"))
    assert plain.keys() == checkpointed.keys()
    for key, value in plain.items():
        torch.testing.assert_close(checkpointed[key], value)


def test_encode_writes_z_labels_and_x_T(tiny_pdae_run, tmp_path):
    run, data = tiny_pdae_run
    out = tmp_path / "z.npz"
    result = runner.invoke(app, ["encode", str(run), str(data), "-o", str(out), "--limit", "5", "--x-T",
                                 "--steps", "3"])
    assert result.exit_code == 0, result.output
    arrays = np.load(out)
    assert arrays["z"].shape == (5, 8) and arrays["x_T"].shape == (5, 1, 8, 8)
    assert arrays["labels"].tolist() == [0, 1, 2, 0, 1]


def test_encode_writes_the_label_column_of_a_csv(tiny_pdae_run, tmp_path):
    from PIL import Image

    run, _ = tiny_pdae_run
    for split, genders in (("train", [0]), ("test", [1, 0, 1])):
        (tmp_path / split).mkdir()
        for i, _ in enumerate(genders):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / split / f"{i}.png")
        rows = [f"{i}.png,{20 + i},{gender},{'xy'[gender]}" for i, gender in enumerate(genders)]
        (tmp_path / f"{split}.csv").write_text("\n".join(["file,age,gender,name", *rows]) + "\n")
    out = tmp_path / "z.npz"
    command = ["encode", str(run), str(tmp_path), "-o", str(out), "--labels", str(tmp_path / "{split}.csv")]
    result = runner.invoke(app, [*command, "--label-column", "gender"])
    assert result.exit_code == 0, result.output
    assert np.load(out)["labels"].tolist() == [1, 0, 1]
    result = runner.invoke(app, command)
    assert isinstance(result.exception, DataError)
    assert "several label columns (age, gender, name): pass a label column" in str(result.exception)


def test_inspect_dpm_names_the_preset_and_pretrain_help_lists_every_preset(tiny_pdae_run):
    from pdae.backbones.adm import PRESETS

    run, _ = tiny_pdae_run
    result = runner.invoke(app, ["inspect-dpm", str(run.parent / "dpm")])
    assert result.exit_code == 0, result.output
    assert re.search(r"\npreset:\s+tiny\n", result.output), result.output
    help_text = " ".join(runner.invoke(app, ["pretrain", "--help"]).output.replace("│", " ").split())
    for name, preset in PRESETS.items():  # one line each: "adm-64: 64x64, 69M: Diff-AE's ..."
        assert f"{name}: {preset.description.split(',')[0]}," in help_text, help_text


def test_skip_bad_names_each_skipped_file_on_one_clean_line(tiny_pdae_run, tmp_path):
    from PIL import Image

    run, _ = tiny_pdae_run
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.new("L", (8, 8), 40 * i).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    result = runner.invoke(app, ["encode", str(run), str(folder), "-o", str(tmp_path / "z.npz"),
                                 "--skip-bad"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line for line in lines if "broken.png" in line] == [
        f"skipping unreadable image {folder / 'broken.png'}: cannot identify image file "
        f"{str(folder / 'broken.png')!r}"]
    assert f"skipped 1 of 4 images in {folder}" in lines
    assert "warn" not in result.output.lower()  # no warnings machinery, no line of pdae's source


def test_reconstruct_gap_and_one_step_write_their_pictures(tiny_pdae_run, tmp_path):
    run, data = tiny_pdae_run
    result = runner.invoke(app, ["reconstruct", str(run), str(data), "-o", str(tmp_path / "r.png"),
                                 "--limit", "3", "--inversion-steps", "4", "--decoding-steps", "4",
                                 "--npz", str(tmp_path / "r.npz"), "--sampler", "ddpm"])
    assert result.exit_code == 0, result.output
    arrays = np.load(tmp_path / "r.npz")
    assert set(arrays) == {"inputs", "random_xT", "inferred_xT"}
    assert all(a.shape == (3, 1, 8, 8) and 0 <= a.min() and a.max() <= 1 for a in arrays.values())

    result = runner.invoke(app, ["gap", str(run), str(data), "-o", str(tmp_path / "gap.png"), "--limit", "4",
                                 "--num-t", "5"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "gap.json").read_text())
    assert len(report["t"]) == len(report["gap_dpm"]) == len(report["gap_pdae"]) == 5
    assert report["share_filled"] == pytest.approx(1 - report["integral_pdae"] / report["integral_dpm"])
    assert (tmp_path / "gap.png").stat().st_size > 0

    result = runner.invoke(app, ["denoise-one-step", str(run), str(data), "-o", str(tmp_path / "one.png"),
                                 "--limit", "2", "--t", "10,500"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "one.png").is_file()
    result = runner.invoke(app, ["denoise-one-step", str(run), str(data), "--t", "5000"])
    assert result.exit_code != 0 and "every t must be" in result.output


def test_eval_reports_the_paper_table(tiny_pdae_run, tmp_path):
    run, data = tiny_pdae_run
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", str(run), str(data), "-o", str(out), "--limit", "4",
                                 "--inversion-steps", "2", "--decoding-steps", "2", "--probe-train", "24",
                                 "--gap-images", "4", "--attributes", "label"])
    assert result.exit_code == 0, result.output
    assert "reconstructing: 2/4" in result.output  # the bar follows the 6 sampler steps of the one batch
    report = json.loads(out.read_text())
    for key in ("random_xT_mse", "random_xT_ssim", "random_xT_psnr", "inferred_xT_mse", "inferred_xT_ssim",
                "inferred_xT_psnr", "linear_probe_accuracy"):
        assert np.isfinite(report[key])
    assert report["random_xT_psnr"] == pytest.approx(
        np.mean(10 * np.log10(1 / np.load(report["per_image_scores"])["random_xT_mse"])), rel=1e-5)
    assert report["latent_dim"] == 8 and report["inversion_steps"] == 2
    assert not (tmp_path / "eval_per_image.partial.npz").exists()  # the resume file goes once complete
    assert 0 <= report["linear_probe_accuracy"] <= 1 and report["train_images_per_s"]["bf16"] > 0
    assert list(report["attributes"]["auroc"]) == list(report["attributes"]["ap"]) == ["label=0", "label=1",
                                                                                      "label=2"]
    assert report["attributes"]["mean_ap"] == pytest.approx(np.mean(list(report["attributes"]["ap"].values())))
    table = out.with_suffix(".md").read_text()
    assert "| 8 | inferred | 2 / 2 DDIM |" in table and "Mean AUROC" in table and "Mean AP" in table
    assert "LPIPS: n/a, the lpips package is not installed" in table


def test_eval_adds_an_lpips_column_where_the_package_is(tiny_pdae_run, tmp_path, stand_in_lpips):
    run, data = tiny_pdae_run
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", str(run), str(data), "-o", str(out), "--limit", "3",
                                 "--inversion-steps", "2", "--decoding-steps", "2", "--probe-train", "24",
                                 "--gap-images", "4"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    per_image = np.load(report["per_image_scores"])
    assert per_image["inferred_xT_lpips"].shape == (3,) and report["lpips_missing"] is None
    assert report["random_xT_lpips"] == pytest.approx(per_image["random_xT_lpips"].mean())
    assert report["random_xT_lpips"] > report["inferred_xT_lpips"] >= 0
    assert f"| {report['inferred_xT_lpips']:.4f} |" in out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_demo_trains_and_writes_every_picture_with_the_shipped_dpm(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--images", "64", "--eval-images", "4"])
    assert result.exit_code == 0, result.output
    for name in ("reconstructions.png", "gap.png", "gap.json", "one_step.png", "ema.safetensors"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "demo_metrics.json").read_text())
    assert 0 <= metrics["inferred_xT_mse"] < metrics["random_xT_mse"]
    result = runner.invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code != 0 and "already holds a demo run" in str(result.exception)


def rgb_folder(root, splits: tuple[str, ...], count: int = 12):
    """Random 8 x 8 RGB PNGs in each split sub-folder (or in `root` itself when `splits` is empty)."""
    from PIL import Image

    rng = np.random.default_rng(2)
    for split in splits or ("",):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / split / f"{i}.png")
    return root


def test_demo_on_a_folder_of_rgb_images_with_a_named_dpm(tmp_path):
    data, dpm = rgb_folder(tmp_path / "faces", ("train", "test")), tmp_path / "dpm"
    result = runner.invoke(app, ["pretrain", "--out", str(dpm), "--data", str(data), "--image-size", "8",
                                 "--channels", "3", "--preset", "tiny", "--images", "16", "--batch-size", "8",
                                 "--threads", "1"])
    assert result.exit_code == 0, result.output

    result = runner.invoke(app, ["demo", "--data", str(data)])
    assert result.exit_code != 0 and "--data needs --dpm" in result.output

    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--data", str(data), "--dpm", str(dpm), "--out", str(out), "--images",
                                 "16", "--batch-size", "8", "--eval-images", "5", "--threads", "1"])
    assert result.exit_code == 0, result.output
    for name in ("reconstructions.png", "gap.png", "one_step.png", "ema.safetensors"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "demo_metrics.json").read_text())
    assert metrics["held_out"] and metrics["images"] == 5 and metrics["data"] == str(data)
    assert 0 <= metrics["inferred_xT_mse"] < metrics["random_xT_mse"]
    assert "5 held-out test images" in " ".join(result.output.split())

    flat = rgb_folder(tmp_path / "flat", ())
    result = runner.invoke(app, ["demo", "--data", str(flat), "--dpm", str(dpm), "--out", str(tmp_path / "d2"),
                                 "--images", "8", "--batch-size", "8", "--eval-images", "3", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert not json.loads((tmp_path / "d2" / "demo_metrics.json").read_text())["held_out"]
    assert "it has no test split" in " ".join(result.output.split())


def test_shipped_pdae_reconstructs_held_out_digits(tmp_path):
    out = tmp_path / "r.npz"
    result = runner.invoke(app, ["reconstruct", "--limit", "4", "--inversion-steps", "20",
                                 "--decoding-steps", "20", "-o", str(tmp_path / "r.png"), "--npz", str(out)])
    assert result.exit_code == 0, result.output
    assert "reconstructing: 2/4" in result.output  # a bar over the 20 + 2 x 20 sampler steps
    arrays = np.load(out)
    inferred = ((arrays["inferred_xT"] - arrays["inputs"]) ** 2).mean()
    random = ((arrays["random_xT"] - arrays["inputs"]) ** 2).mean()
    assert inferred < 0.01 and inferred < random


BAD_INPUTS = [  # (arguments with {run}, {dpm}, {data}, {tmp} filled in, what the message must say)
    (["sample", "--dpm", "{tmp}/missing"], "no checkpoint at"),
    (["pretrain", "--out", "{tmp}/r", "--data", "{tmp}/nothing-here"], "does not exist"),
    (["fit", "--out", "{tmp}/a-file", "--dpm", "{dpm}", "--data", "{data}"], "is a file, not a run folder"),
    (["fit", "--out", "{tmp}/r", "--dpm", "{dpm}", "--data", "{data}", "--batch-size", "0"], "--batch-size"),
    (["encode", "{run}", "{tmp}/nan.npz", "-o", "{tmp}/z.npz"], "must be finite"),
    (["encode", "{run}", "{tmp}/a-file", "-o", "{tmp}/z.npz"], "not a supported dataset"),
    (["encode", "{dpm}", "{data}", "-o", "{tmp}/z.npz"], "expected a PDAE checkpoint"),
    (["reconstruct", "{run}", "{data}", "--sampler", "euler"], "unknown sampler"),
    (["reconstruct", "{run}", "{data}", "--limit", "0"], "--limit"),
    (["denoise-one-step", "{run}", "{data}", "--t", "ten"], "comma-separated integers"),
    (["denoise-one-step", "{run}", "{data}", "--t", "5000"], "every t must be in"),
    (["fit", "--out", "{tmp}/r", "--dpm", "{dpm}", "--data", "{data}", "--images", "lots"], "not a count"),
    (["pretrain", "--out", "{tmp}/r", "--data", "{data}", "--preset", "huge"], "unknown preset"),
    (["pretrain", "--out", "{tmp}/r", "--data", "{data}", "--preset", "adm-64"],
     "preset adm-64 is made for 64x64 images, not 28x28: pass --image-size 64"),
    (["pretrain", "--out", "{dpm}", "--data", "{data}", "--resume", "--image-size", "8", "--preset", "small"],
     "--preset small (the run has tiny)"),
    (["pretrain", "--out", "{tmp}/r", "--data", "{data}", "--schedule", "sigmoid"], "unknown noise schedule"),
    (["pretrain", "--out", "{tmp}/r", "--data", "{data}", "--init", "{dpm}", "--preset", "small"],
     "--preset small ({dpm} has tiny)"),
    (["pretrain", "--out", "{dpm}", "--data", "{data}", "--init", "{dpm}", "--resume"], "give one of them"),
    (["pretrain", "--out", "{tmp}/r", "--data", "{data}", "--channels", "2"], "channels must be 1 or 3"),
    (["pretrain", "--out", "{tmp}/r", "--data", "{data}", "--min-snr", "0"], "--min-snr must be positive"),
    (["sample", "--dpm", "{dpm}", "--steps", "0"], "number of steps must be in"),
    (["sample", "--dpm", "{dpm}", "--device", "cuda:7"], "was asked for"),
    (["sample", "--dpm", "{dpm}", "--device", "gpu"], "unknown device"),
    (["fit", "--out", "{tmp}/nothing", "--resume"], "nothing to resume"),
    (["fit", "--out", "{run}", "--data", "{data}", "--resume", "--latent-dim", "16"],
     "--latent-dim 16 (the run has 8)"),
    (["fit", "--out", "{run}", "--data", "{data}", "--resume", "--dpm", "{shipped}"], "another DPM"),
    (["inspect-dpm", "{tmp}/a-file"], "is not a readable torch checkpoint"),
    (["fit", "--out", "{dpm}", "--data", "{data}", "--resume"], "holds a dpm run, not a pdae run"),
    (["pretrain", "--out", "{run}", "--data", "{data}", "--resume"], "holds a pdae run, not a dpm run"),
    (["pretrain", "--out", "{tmp}/broken-run", "--data", "{data}", "--resume"], "is not a pdae run config"),
    (["gap", "{run}", "{data}", "--limit", "4", "--num-t", "2", "--threads", "0"], "--threads"),
    (["eval", "{run}", "{data}", "--gap-images", "0"], "--gap-images"),
    (["eval", "{run}", "{data}", "--attributes", "age"], "no label column 'age'"),
    (["eval", "{run}", "{data}", "--fid-features", "{tmp}/no-classifier"], "--fid-features"),
    (["export", "{run}", "{tmp}/hub", "--eval", "{tmp}/missing.json"], "does not exist"),
    (["app", "{run}", "--directions", "{tmp}/missing"], "no checkpoint at"),
    (["interpolate", "0"], "expected [RUN] and 2 images"),
    (["interpolate", "{run}", "0"], "is a run, not an image"),
    (["interpolate", "{run}", "0", "{tmp}/missing.png", "--images", "{data}"], "no image file at"),
    (["interpolate", "{run}", "0", "99", "--images", "{data}"], "image index 99 is out of range"),
    (["interpolate", "{run}", "0", "1", "--images", "{data}", "--mode", "zigzag"], "unknown mode"),
    (["manipulate", "{run}", "0", "--attribute", "x", "--directions", "{tmp}/none"], "no checkpoint at"),
    (["manipulate", "{run}", "0", "--attribute", "x", "--scale", "big"], "comma-separated numbers"),
    (["sample", "{run}", "-n", "1"], "pdae latent fit"),
    (["sample", "{run}", "--stop-fraction", "1"], "--stop-fraction must be in [0, 1)"),
    (["sample", "{run}", "--class", "1"], "needs a class-conditional PDAE"),
    (["sample", "--class", "1"], "--class applies to sampling from a PDAE"),
    (["latent", "fit", "{run}", "--data", "{data}", "--out", "{tmp}/nothing", "--resume"], "nothing to resume"),
    (["fewshot", "{run}", "--support", "{data}", "--latent", "{tmp}/none"], "no checkpoint at"),
    (["fit", "--out", "{tmp}/r", "--dpm", "{dpm}", "--data", "{tmp}/plain.npz", "--condition", "class"],
     "needs class labels"),
    (["fit", "--out", "{tmp}/r", "--dpm", "{dpm}", "--data", "{data}", "--condition", "pixels"],
     "unknown condition"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_INPUTS])
def test_bad_inputs_end_in_a_message_and_a_non_zero_exit_never_a_traceback(args, message, tiny_pdae_run,
                                                                           tmp_path, run_cli):
    run, data = tiny_pdae_run
    (tmp_path / "a-file").write_text("not a run, not images, not a checkpoint")
    (tmp_path / "broken-run").mkdir()
    (tmp_path / "broken-run" / "config.json").write_text("{not json")
    np.savez(tmp_path / "nan.npz", images=np.full((2, 8, 8), np.nan, dtype=np.float32))
    np.savez(tmp_path / "plain.npz", images=np.zeros((4, 8, 8), dtype=np.uint8))
    before = {p: p.stat().st_mtime_ns for p in run.iterdir()}
    fill = {"run": str(run), "dpm": str(run.parent / "dpm"), "data": str(data), "tmp": str(tmp_path),
            "shipped": str(SHIPPED_DPM)}
    code, output = run_cli(*(a.format(**fill) for a in args))
    assert code not in (0, None), output
    assert message.format(**fill) in " ".join(output.split()), output
    assert "Traceback" not in output
    assert {p: p.stat().st_mtime_ns for p in run.iterdir()} == before  # nothing of the run was touched


def test_fit_resume_keeps_the_frozen_dpm_and_continues_training(tiny_pdae_run, tmp_path):
    from pdae.checkpoint import load_weights
    from pdae.training import TRAIN_STATE_NAME

    _, data = tiny_pdae_run
    dpm_run, run = tiny_pdae_run[0].parent / "dpm", tmp_path / "pdae"
    common = ["--dpm", str(dpm_run), "--out", str(run), "--data", str(data), "--latent-dim", "8",
              "--batch-size", "8", "--threads", "1"]
    assert runner.invoke(app, ["fit", *common, "--images", "16"]).exit_code == 0
    result = runner.invoke(app, ["fit", *common, "--images", "32", "--resume"])  # the same options, typed
    assert result.exit_code == 0, result.output
    dpm_weights, _ = load_weights(dpm_run / "ema.safetensors")
    pdae_weights, _ = load_weights(run / "ema.safetensors")
    assert all(torch.equal(pdae_weights[f"dpm.{k}"], v) for k, v in dpm_weights.items())
    assert torch.load(run / TRAIN_STATE_NAME, weights_only=True)["step"] == 4
