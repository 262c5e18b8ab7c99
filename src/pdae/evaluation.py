"""The numbers pdae reports for a PDAE run: reconstruction, posterior-mean gap, representation metrics,
throughput, and the paper-format table of them."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from pdae.attributes import MAX_CLASSES, binary_targets, fit_directions
from pdae.autoencode import StepCounts, reconstruct
from pdae.checkpoint import atomic_write
from pdae.data import ImageDataset, collate, iterate_batches, open_dataset, to_unit_range
from pdae.device import images_per_second
from pdae.diagnostics import integrate_over_t, posterior_mean_gap
from pdae.diffae import DiffAE
from pdae.fid import FeatureFn, frechet_from_statistics, reference_statistics, statistics
from pdae.latent import LatentDPM, sample_images
from pdae.metrics import PerImageMetric, mse_per_image, psnr_per_image, ssim_per_image
from pdae.model import PDAE
from pdae.probes import average_precision_probe, linear_probe_accuracy, regression_mae
from pdae.progress import per_step, progress_bar
from pdae.training import adamw


class ReferenceImages(NamedTuple):
    """What FID compares samples with: the images, the file or folder they come from, which of them (what
    reports print) and the key of their cached statistics within that source."""

    images: Dataset
    source: Path
    which: str
    selection: str


def reconstruction_metrics(model: PDAE, dataset: Dataset, steps: StepCounts, batch_size: int = 100,
                           seed: int = 0) -> dict:
    """MSE and SSIM on [0, 1] images, per image then averaged, for random and for inferred x_T."""
    return mean_scores(reconstruction_scores(model, dataset, steps, batch_size, seed))


def mean_scores(scores: dict[str, torch.Tensor]) -> dict[str, float]:
    """The average of each per-image score: the numbers of the paper's reconstruction table."""
    return {name: float(values.mean()) for name, values in scores.items()}


IMAGE_METRICS = {"mse": mse_per_image, "psnr": psnr_per_image, "ssim": ssim_per_image}


def reconstruction_scores(model: PDAE, dataset: Dataset, steps: StepCounts, batch_size: int = 100,
                          seed: int = 0, resume_file: Path | None = None, settings: str = "",
                          extra_metrics: dict[str, PerImageMetric] | None = None) -> dict[str, torch.Tensor]:
    """Per-image MSE, PSNR and SSIM (and `extra_metrics`, such as LPIPS) on [0, 1] images for random and
    inferred x_T; image i uses seed + i.

    With `resume_file`, the scores so far are saved there after every batch and a later call with the same
    `settings` (a string naming the run, images and steps) starts after them: a long evaluation that is
    killed loses one batch at most. Image i's result does not depend on where the pass started."""
    metrics = {**IMAGE_METRICS, **(extra_metrics or {})}
    settings = "|".join([settings, *(extra_metrics or {})])
    scores = _resumed_scores(resume_file, settings)
    done = len(next(iter(scores.values()))[0]) if scores else 0
    scores = scores or {f"{k}_{m}": [] for k in ("random_xT", "inferred_xT") for m in metrics}
    with progress_bar("reconstructing", total=len(dataset), fields=()) as bar:
        bar.update(done)
        for start in range(done, len(dataset), batch_size):
            x0, _ = collate(dataset, range(start, min(start + batch_size, len(dataset))))
            outputs = reconstruct(model, x0, steps, seeds=range(seed + start, seed + start + len(x0)),
                                  callback=per_step(bar, len(x0), steps.reconstruction_steps))
            for name, image in outputs.items():
                for metric, per_image in metrics.items():
                    scores[f"{name}_{metric}"].append(per_image(to_unit_range(image.cpu()), to_unit_range(x0)))
            if resume_file is not None:
                _save_partial_scores(resume_file, settings, scores)
    return {name: torch.cat(values) for name, values in scores.items()}


def _resumed_scores(resume_file: Path | None, settings: str) -> dict[str, list[torch.Tensor]]:
    """The scores a killed pass with the same settings saved, or {} (none, or other settings)."""
    if resume_file is None or not resume_file.exists():
        return {}
    with np.load(resume_file) as saved:
        if str(saved["settings"]) != settings:
            return {}
        return {name: [torch.from_numpy(saved[name])] for name in saved.files if name != "settings"}


def _save_partial_scores(resume_file: Path, settings: str, scores: dict[str, list[torch.Tensor]]) -> None:
    arrays = {name: torch.cat(values).numpy() for name, values in scores.items()}
    atomic_write(resume_file, lambda tmp: np.savez(open(tmp, "wb"), settings=np.array(settings), **arrays))


def test_reference(data: Path, image_size: int, channels: int, limit: int | None = None) -> ReferenceImages:
    """What FID compares samples with: `data`'s test split (all of `data` when it has no split), `limit` of
    them when given. Its description also keys the cached statistics, so `pdae eval` and `pdae sample --fid`
    share them."""
    dataset = open_dataset(data, image_size=image_size, channels=channels, split="test", limit=limit)
    which = f"{dataset.source.split} split" if dataset.source.split else "all images"
    which += f", {len(dataset)} of them" if limit is not None else ""
    return ReferenceImages(dataset, Path(data), which, f"{which}|{channels}x{image_size}")


def sample_fid(model: PDAE | DiffAE, latent: LatentDPM, reference: ReferenceImages, features: FeatureFn,
               feature_name: str, num_samples: int, steps: StepCounts, seed: int = 0,
               batch_size: int = 100) -> dict:
    """FID between `num_samples` samples (latent-DPM codes decoded from random x_T, seeded seed + i) and the
    reference images, on `features`; the reference's statistics are cached per dataset."""
    sample_features = []
    with progress_bar("sampling for FID", total=num_samples, fields=()) as bar:
        for start in range(0, num_samples, batch_size):
            seeds = range(seed + start, seed + min(start + batch_size, num_samples))
            images = sample_images(model, latent, seeds, steps, callback=per_step(bar, len(seeds), steps.decoding))
            sample_features.append(features(to_unit_range(images.cpu())))
    return {**fid_against(torch.cat(sample_features), reference, features, feature_name),
            "decoding_steps": steps.decoding}


def fid_against(sample_features: torch.Tensor, reference: ReferenceImages, features: FeatureFn,
                feature_name: str) -> dict:
    """FID between samples' features and the reference images' (whose statistics are cached per dataset)."""
    reference_stats = reference_statistics(
        reference.source, lambda: (to_unit_range(x) for x, _ in iterate_batches(reference.images, 500)),
        features, feature_name, reference.selection)
    return {"fid": frechet_from_statistics(statistics(sample_features), reference_stats),
            "num_samples": len(sample_features), "reference_images": len(reference.images),
            "feature_network": feature_name}


def attribute_report(model: PDAE, train_set: ImageDataset, test_set: ImageDataset,
                     columns: list[str]) -> dict:
    """Per label column: AUROC of a linear classifier on standardised z per attribute it defines (and
    their mean) and the average precision of DiTi's / DBAE's linear probe (its best epoch chosen on the
    last tenth of the training codes, held out from its fit), or for a numeric column of many values the
    MAE of a linear regression."""
    z_train, z_test = encode_dataset(model, train_set)[0], encode_dataset(model, test_set)[0]
    tables = train_set.label_table(columns), test_set.label_table(columns)
    numeric = [name for name in columns if tables[0][name].dtype.kind in "iuf"
               and len(np.unique(tables[0][name])) > MAX_CLASSES]
    report: dict = {"regression_mae": {name: regression_mae(z_train, torch.as_tensor(tables[0][name]), z_test,
                                                            torch.as_tensor(tables[1][name]))
                                       for name in numeric}}
    binary = [name for name in columns if name not in numeric]
    if binary:
        targets = binary_targets({n: tables[0][n] for n in binary}, {n: tables[1][n] for n in binary})
        scores = fit_directions(z_train, targets[0], z_test, targets[1]).scores
        report["auroc"] = {name: score["auroc"] for name, score in scores.items()}
        report["mean_auroc"] = float(np.mean([v for v in report["auroc"].values() if v is not None]))
        y_train, y_test = (torch.as_tensor(np.stack(list(t.values()), axis=1)) for t in targets)
        fit = len(z_train) - max(1, len(z_train) // 10)
        ap = average_precision_probe(z_train[:fit], y_train[:fit], z_train[fit:], y_train[fit:], z_test, y_test)
        report["ap"] = dict(zip(targets[0], ap["per_attribute_ap"]))
        report["mean_ap"] = ap["mean_ap"]
    return report


METHOD_NAMES = {"pdae": "PDAE", "diffae": "Diff-AE"}


def gap_summary(gap: dict) -> str:
    """One line on a gap report: the share of the DPM's gap a PDAE fills, or a Diff-AE's integrated gap."""
    if "share_filled" not in gap:
        return (f"Posterior-mean gap integrated over t: {gap['integral_diffae']:.4g} "
                f"({gap['num_images']} images)")
    return (f"Posterior-mean gap filled: {100 * gap['share_filled']:.1f} % integrated over t, "
            f"{100 * gap['mean_share_filled_per_t']:.1f} % mean per t ({gap['num_images']} images)")


def markdown_table(report: dict) -> str:
    """The paper's reconstruction table (and what else the report holds) as markdown."""
    refine = report.get("refine", 0)  # reports written before the option: plain DDIM inversion
    steps = (f"{report['inversion_steps']}{f' x {refine} refinements' if refine else ''} / "
             f"{report['decoding_steps']} DDIM")
    lines = [f"{METHOD_NAMES[report.get('method', 'pdae')]} on {report['num_test_images']} held-out images "
             f"({report['run']})", "",
             "| latent size | x_T | inversion / decoding steps | SSIM | LPIPS | PSNR (dB) | MSE |",
             "|---|---|---|---|---|---|---|"]
    for name, label, used in (("random_xT", "random", f"- / {report['decoding_steps']} DDIM"),
                              ("inferred_xT", "inferred", steps)):
        lpips = f"{report[name + '_lpips']:.4f}" if name + "_lpips" in report else "n/a"
        lines.append(f"| {report['latent_dim']} | {label} | {used} | {report[name + '_ssim']:.4f} | {lpips} | "
                     f"{report[name + '_psnr']:.2f} | {report[name + '_mse']:.5f} |")
    if report.get("lpips_missing"):
        lines += ["", f"LPIPS: n/a, {report['lpips_missing']}."]
    lines += ["", gap_summary(report["gap"]) + ".",
              f"Linear probe: {100 * report['linear_probe_accuracy']:.2f} % "
              f"({report['probe_train_images']} training codes)."]
    for name, value in report.get("attributes", {}).get("auroc", {}).items():
        lines.append(f"AUROC {name}: {value:.3f}" if value is not None else f"AUROC {name}: n/a")
    if "mean_auroc" in report.get("attributes", {}):
        lines.append(f"Mean AUROC: {report['attributes']['mean_auroc']:.3f}")
        lines.append(f"Mean AP (linear layer on z, Adam 1e-3, 15 epochs): {report['attributes']['mean_ap']:.3f}")
    for name, value in report.get("attributes", {}).get("regression_mae", {}).items():
        lines.append(f"{name}: linear-regression MAE {value:.3f}")
    fid = report.get("sample_fid", {})
    if "fid" in fid:
        lines.append(f"FID of {fid['num_samples']} samples (latent DPM, {fid['decoding_steps']} DDIM steps) "
                     f"against {fid['reference_images']} test images, {fid['feature_network']}: {fid['fid']:.3f}")
    elif "missing" in fid:
        lines.append(f"FID of samples: n/a, {fid['missing']}")
    return "\n".join(lines) + "\n"


def gap_report(model: PDAE, x0: torch.Tensor, num_t: int = 50, seed: int = 0) -> dict:
    """Posterior-mean gap at num_t evenly spaced t, its integral over t, and the share PDAE fills.

    The integral is dominated by t near 0, where the shift coefficient c_t vanishes (c_0 = 0), so the
    mean over t of the per-t share is reported too.
    """
    timesteps = model.schedule.timesteps(num_t)
    gaps = posterior_mean_gap(model, x0, timesteps, torch.Generator().manual_seed(seed))
    report = {"t": timesteps.tolist(), "num_images": len(x0)}
    for name, values in gaps.items():
        report[f"gap_{name}"], report[f"integral_{name}"] = values.tolist(), integrate_over_t(values, timesteps)
    if "pdae" in gaps:  # a Diff-AE has no DPM of its own to fill the gap of
        report["share_filled"] = 1 - report["integral_pdae"] / report["integral_dpm"]
        report["mean_share_filled_per_t"] = float((1 - gaps["pdae"] / gaps["dpm"]).mean())
    return report


@torch.no_grad()
def encode_dataset(model: PDAE, dataset: Dataset, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    codes, labels = [], []
    for x0, y in iterate_batches(dataset, batch_size):
        codes.append(model.encode(x0.to(model.device)).cpu())
        labels.append(y)
    return torch.cat(codes), torch.cat(labels)


def probe_accuracy(model: PDAE, train_set: Dataset, test_set: Dataset) -> float:
    """Linear-probe accuracy: logistic regression on train-split codes, scored on test-split codes."""
    return linear_probe_accuracy(*encode_dataset(model, train_set), *encode_dataset(model, test_set))


def training_throughput(model: PDAE, x0: torch.Tensor, bf16: bool, steps: int = 5,
                        net: torch.nn.Module | None = None, fused_adamw: bool = True) -> float:
    """Images per second of full PDAE training steps (forward, backward, AdamW), after one warm-up step.

    `net` is what the loss calls, when not the model itself (the model compiled, say); `fused_adamw` as in
    pdae.training.adamw."""
    loss_fn, net = model.training_loss(), model if net is None else net  # a compiled module has no truth value
    device = model.device
    x0 = x0.to(device)
    opt = adamw(model, lr=0.0, fused=fused_adamw)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(net, x0, torch.zeros(len(x0), device=device)).float().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    model.train()
    images_per_s = images_per_second(step, steps, len(x0), device)
    model.eval()
    return images_per_s


def plot_gap(report: dict, path) -> None:
    """The posterior-mean gap per t, DPM alone against DPM + learned shift, on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(report["t"], report["gap_dpm"], label="DPM")
    ax.plot(report["t"], report["gap_pdae"], label=f"PDAE (fills {100 * report['share_filled']:.0f}%)")
    ax.set(xlabel="t", ylabel="posterior-mean gap (per pixel)", yscale="log",
           title=f"Posterior-mean gap, {report['num_images']} held-out images")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
