"""The latent DPM: its network, the L1 eps loss by hand, the stop fraction, truncation, a fit that learns
a two-mode code distribution, and `pdae latent fit` -> `pdae sample RUN` end to end."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import pdae.fid as fid
from pdae.autoencode import StepCounts, decode_from_noise
from pdae.checkpoint import save_weights
from pdae.classifier import build_classifier, classifier_config
from pdae.cli import app
from pdae.commands.autoencoder import open_images
from pdae.commands.options import SHIPPED_PDAE
from pdae.data import iterate_batches, open_dataset, to_unit_range
from pdae.errors import PdaeError
from pdae.fewshot import accepted_codes, first_of_each_class, support_classifier
from pdae.fid import classifier_features, frechet_distance
from pdae.latent import (STOP_FRACTION, CodeDataset, LatentDPM, default_latent_run, latent_path, load_latent_dpm,
                         sample_codes, sample_images)
from pdae.linear import Standardiser
from pdae.losses import EpsLoss
from pdae.model import load_pdae
from pdae.nn.latent_mlp import LatentMLPConfig
from pdae.sampling import SeededNoise, eps_of, sample_ddim, shifted_eps
from pdae.schedule import NoiseSchedule
from pdae.training import TrainConfig, train

runner = CliRunner()
torch.set_num_threads(1)


def test_latent_network_starts_at_zero_and_the_l1_loss_matches_a_hand_computation():
    latent = LatentDPM(LatentMLPConfig(dim=6, width=16, depth=3), NoiseSchedule("linear", 1000))
    z = torch.randn(5, 6)
    t = torch.tensor([0, 10, 100, 500, 999])
    assert latent(z, t).shape == (5, 6) and latent(z, t).abs().max() == 0  # zero output layer
    torch.manual_seed(3)
    loss = EpsLoss(latent.schedule, l1=True)(latent, z, torch.zeros(5))
    torch.manual_seed(3)
    torch.randint(0, 1000, (5,))
    expected = torch.randn(5, 6).abs().mean(1)  # the network predicts 0, so the loss is mean |eps|
    torch.testing.assert_close(loss, expected)


def test_stop_fraction_turns_the_shift_off_below_min_t(make_shifted_pdae):
    model = make_shifted_pdae(latent_dim=4)
    x_t, z, t = torch.randn(2, 1, 8, 8), torch.randn(2, 4), torch.tensor([100, 600])
    with torch.no_grad():
        stopped = shifted_eps(model, z, min_t=300)(x_t, t)
        torch.testing.assert_close(stopped[0], eps_of(model.dpm, 1)(x_t, t)[0])
        torch.testing.assert_close(stopped[1], shifted_eps(model, z)(x_t, t)[1])
        assert (stopped[1] - eps_of(model.dpm, 1)(x_t, t)[1]).abs().max() > 1e-4


def test_truncation_bounds_the_standardised_codes():
    latent = LatentDPM(LatentMLPConfig(dim=16, width=16, depth=2), NoiseSchedule("linear", 1000)).eval()
    free = latent.standardiser(sample_codes(latent, range(64), steps=5))
    truncated = latent.standardiser(sample_codes(latent, range(64), steps=5, truncate=0.5))
    assert free.abs().max() > 1  # an untrained network, unclamped, leaves [-1, 1]
    assert truncated.abs().max() <= 0.5 + 1e-5


def test_latent_fit_learns_two_modes(tmp_path):
    """Codes from two well separated clusters: trained samples fall near the clusters, not between them."""
    g = torch.Generator().manual_seed(0)
    signs = torch.randint(0, 2, (4000, 1), generator=g) * 2 - 1
    codes = torch.cat([4 * signs + 0.3 * torch.randn(4000, 1, generator=g), torch.randn(4000, 1, generator=g)],
                      dim=1)
    latent = LatentDPM(LatentMLPConfig(dim=2, width=64, depth=3), NoiseSchedule("linear", 1000))
    standardise = Standardiser.fit(codes)
    latent.z_mean.copy_(standardise.mean)
    latent.z_std.copy_(standardise.std)
    cfg = TrainConfig(total_images=60_000, batch_size=200, lr=2e-3, warmup_images=2000,
                      ema_halflife_images=5000, checkpoint_images=60_000)
    train(latent, EpsLoss(latent.schedule, l1=True), CodeDataset(standardise(codes)), cfg, tmp_path / "run",
          latent.to_config(), device=torch.device("cpu"))
    samples = sample_codes(latent, range(400), steps=50)
    near_a_mode = ((samples[:, 0].abs() - 4).abs() < 1.5).float().mean()
    assert near_a_mode > 0.8, float(near_a_mode)
    assert 0.25 < (samples[:, 0] > 0).float().mean() < 0.75  # both modes


def test_latent_fit_then_sample_from_the_pdae(tmp_path, make_latent_run):
    run, data = make_latent_run(tmp_path, latent=False)
    result = runner.invoke(app, ["sample", str(run), "-n", "2"])
    assert result.exit_code != 0 and "pdae latent fit" in str(result.exception or result.output)

    fit = ["latent", "fit", str(run), "--data", str(data), "--images", "256", "--batch-size", "32",
           "--width", "16", "--depth", "2", "--threads", "1"]
    result = runner.invoke(app, fit)
    assert result.exit_code == 0, result.output
    assert (run / "latent" / "ema.safetensors").is_file()
    cache = run / "latent" / "codes.pt"
    codes = torch.load(cache, weights_only=True)["codes"]
    assert codes.shape == (24, 8)
    written = cache.stat().st_mtime_ns
    result = runner.invoke(app, [*fit[:-6], "--images", "512", "--batch-size", "32", "--width", "16",
                                 "--depth", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert cache.stat().st_mtime_ns == written  # codes encoded once, reused on resume

    npz = tmp_path / "s.npz"
    result = runner.invoke(app, ["sample", str(run), "-n", "3", "--steps", "4", "--latent-steps", "4",
                                 "--stop-fraction", "0.5", "--npz", str(npz), "-o", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    samples = np.load(npz)["samples"]
    assert samples.shape == (3, 1, 8, 8) and 0 <= samples.min() and samples.max() <= 1
    assert "sampling: 2/3" in result.output  # the bar follows the decoding steps, not only the batch's end

    fewshot = tmp_path / "fewshot.png"
    result = runner.invoke(app, ["fewshot", str(run), "--support", str(data), "--class", "1", "-n", "3",
                                 "--shots", "2", "--steps", "3", "--latent-steps", "3", "-o", str(fewshot)])
    assert result.exit_code == 0, result.output
    report = json.loads(fewshot.with_suffix(".json").read_text())
    assert report["support_images"] == 6 and report["codes_drawn"] % 256 == 0
    assert 3 <= report["share_kept"] * report["codes_drawn"] <= report["codes_drawn"]

    result = runner.invoke(app, ["sample", "--truncate", "1"])
    assert result.exit_code != 0 and "pass its RUN" in result.output


def test_sample_stops_the_shift_for_the_last_measured_share_of_steps_by_default(tmp_path):
    """Through `pdae sample` on the shipped PDAE (a tiny fresh model saturates its samples to 0 or 1, where
    the last steps' shift cannot show)."""
    samples = {}
    for name, extra in (("default", []), ("0.3", ["--stop-fraction", str(STOP_FRACTION)]),
                        ("0", ["--stop-fraction", "0"])):
        npz = tmp_path / f"{name}.npz"
        result = runner.invoke(app, ["sample", str(SHIPPED_PDAE), "-n", "2", "--steps", "10", "--latent-steps", "3",
                                     *extra, "--npz", str(npz), "-o", str(tmp_path / f"{name}.png"), "--threads", "1"])
        assert result.exit_code == 0, result.output
        samples[name] = np.load(npz)["samples"]
    assert STOP_FRACTION == 0.3
    np.testing.assert_array_equal(samples["default"], samples["0.3"])
    assert np.abs(samples["default"] - samples["0"]).max() > 1e-3


def tiny_classifier(folder: Path) -> Path:
    """A random 3-class classifier of 8 x 8 grayscale images, as a .safetensors file: FID's features."""
    path = folder / "classifier.safetensors"
    torch.manual_seed(0)
    config = classifier_config(1, 3, 8, widths=(8, 8))
    save_weights(path, build_classifier(config).state_dict(), config)
    return path


def test_eval_reports_the_fid_of_latent_dpm_samples(tmp_path, monkeypatch, make_latent_run):
    """`pdae eval` samples codes from the run's latent DPM, decodes them and compares them with the test
    split on a classifier's features: the same number as computing it by hand."""
    run, data = make_latent_run(tmp_path)
    monkeypatch.setattr(fid, "CACHE_DIR", tmp_path / "fid-cache")
    classifier = tiny_classifier(tmp_path)
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", str(run), str(data), "-o", str(out), "--limit", "2", "--inversion-steps",
                                 "2", "--decoding-steps", "3", "--probe-train", "24", "--gap-images", "2",
                                 "--fid-samples", "6", "--fid-features", str(classifier), "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())["sample_fid"]

    model = load_pdae(run)
    samples = sample_images(model, load_latent_dpm(run / "latent"), range(6), StepCounts(decoding=3))
    test_images = torch.cat([x for x, _ in iterate_batches(open_images(data, model, "test", None), 100)])
    features = classifier_features(classifier)
    expected = frechet_distance(features(to_unit_range(samples)), features(to_unit_range(test_images)))
    assert report["fid"] == pytest.approx(expected, rel=1e-6)
    assert report["num_samples"] == 6 and report["reference_images"] == len(test_images)
    assert "FID of 6 samples" in out.with_suffix(".md").read_text()
    assert len(list((tmp_path / "fid-cache").iterdir())) == 1  # the test split's statistics, cached

    result = runner.invoke(app, ["eval", str(run), str(data), "-o", str(out), "--limit", "2", "--inversion-steps",
                                 "2", "--decoding-steps", "3", "--probe-train", "24", "--gap-images", "2",
                                 "--fid-samples", "6", "--fid-features", str(classifier), "--fid-reference-images",
                                 "3", "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())["sample_fid"]
    expected = frechet_distance(features(to_unit_range(samples)), features(to_unit_range(test_images[:3])))
    assert report["reference_images"] == 3 and report["fid"] == pytest.approx(expected, rel=1e-6)
    assert len(list((tmp_path / "fid-cache").iterdir())) == 2

    result = runner.invoke(app, ["eval", str(run), str(data), "-o", str(out), "--limit", "2", "--inversion-steps",
                                 "2", "--decoding-steps", "3", "--probe-train", "24", "--gap-images", "2",
                                 "--fid-samples", "6", "--latent", str(tmp_path / "nowhere"), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "pdae latent fit" in json.loads(out.read_text())["sample_fid"]["missing"]


def test_sample_scores_the_fid_of_dpm_and_pdae_samples_against_a_dataset(tmp_path, monkeypatch, make_latent_run):
    """`pdae sample --fid DATA` (a DPM's samples, or a PDAE's through its latent DPM) reports the FID that a
    hand computation on the written samples and the dataset's images gives, and saves it as JSON."""
    run, data = make_latent_run(tmp_path)
    monkeypatch.setattr(fid, "CACHE_DIR", tmp_path / "fid-cache")
    classifier = tiny_classifier(tmp_path)
    features = classifier_features(classifier)
    reference = open_dataset(data, image_size=8, channels=1, split="test")
    reference_features = features(to_unit_range(torch.cat([x for x, _ in iterate_batches(reference, 100)])))
    for source in (["--dpm", str(tmp_path / "dpm")], [str(run)]):
        out = tmp_path / "samples.png"
        result = runner.invoke(app, ["sample", *source, "-n", "7", "--steps", "3", "-o", str(out), "--npz",
                                     str(tmp_path / "s.npz"), "--fid", str(data), "--fid-features", str(classifier),
                                     "--threads", "1"])
        assert result.exit_code == 0, result.output
        report = json.loads(out.with_suffix(".json").read_text())
        samples = torch.from_numpy(np.load(tmp_path / "s.npz")["samples"])
        expected = frechet_distance(features(samples), reference_features)
        assert report["fid"] == pytest.approx(expected, rel=1e-4)
        assert report["num_samples"] == 7 and report["reference_images"] == len(reference)
        assert f"FID {expected:.2f}" in result.output
    few = open_dataset(data, image_size=8, channels=1, split="test", limit=3)  # a CPU user's cheaper reference
    result = runner.invoke(app, ["sample", "--dpm", str(tmp_path / "dpm"), "-n", "7", "--steps", "3", "-o", str(out),
                                 "--npz", str(tmp_path / "s.npz"), "--fid", str(data), "--fid-features",
                                 str(classifier), "--fid-reference-images", "3", "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_suffix(".json").read_text())
    samples = torch.from_numpy(np.load(tmp_path / "s.npz")["samples"])
    few_features = features(to_unit_range(torch.cat([x for x, _ in iterate_batches(few, 100)])))
    assert len(few) == 3 < len(reference) and report["reference_images"] == 3
    assert report["fid"] == pytest.approx(frechet_distance(features(samples), few_features), rel=1e-4)
    assert len(list((tmp_path / "fid-cache").iterdir())) == 2  # not the whole split's statistics again
    result = runner.invoke(app, ["sample", "--dpm", str(tmp_path / "dpm"), "--fid-reference-images", "3"])
    assert result.exit_code != 0 and "applies with --fid" in result.output
    result = runner.invoke(app, ["sample", str(run), "--scale", "0,1", "--fid", str(data)])
    assert result.exit_code != 0 and "one --scale" in result.output
    result = runner.invoke(app, ["sample", "--dpm", str(tmp_path / "dpm"), "-o", str(tmp_path / "none.png"),
                                 "--fid", str(tmp_path / "nowhere")])
    assert result.exit_code != 0 and "exist" in result.output and not (tmp_path / "none.png").exists()


def test_few_shot_filter_keeps_only_the_requested_class():
    latent = LatentDPM(LatentMLPConfig(dim=4, width=16, depth=2), NoiseSchedule("linear", 1000)).eval()
    g = torch.Generator().manual_seed(0)
    codes = torch.randn(10, 4, generator=g)
    labels = (codes[:, 0] > 0).long()  # class 1: a positive first dimension
    classifier = support_classifier(latent, codes, labels)
    kept, accepted, draws = accepted_codes(latent, classifier, 1, 20, itertools.count(), latent_steps=3,
                                           batch_size=16)
    assert kept.shape == (20, 4) and 20 <= accepted <= draws and draws % 16 == 0
    assert (classifier.predict(kept) == 1).all()
    every = sample_codes(latent, range(draws), steps=3)  # the same seeds: the filter kept what it should
    assert accepted == int((classifier.predict(every) == 1).sum())
    assert (kept[:, 0] > 0).float().mean() > 0.9
    with pytest.raises(PdaeError, match="never predict"):
        accepted_codes(latent, classifier, 7, 1, itertools.count(), latent_steps=3, batch_size=8, max_draws=16)


def test_first_shots_of_each_class(tmp_path):
    data = tmp_path / "d.npz"
    np.savez(data, images=np.zeros((9, 8, 8), np.uint8), labels=np.array([2, 0, 2, 2, 1, 0, 1, 0, 2]))
    dataset = open_dataset(data, image_size=8, channels=1)
    assert first_of_each_class(dataset, 2) == [0, 1, 2, 4, 5, 6]
    assert first_of_each_class(dataset, None) == list(range(9))


@pytest.mark.parametrize("fraction", ["-0.1", "1"])
def test_stop_fraction_out_of_range_is_refused(fraction):
    result = runner.invoke(app, ["sample", "missing-run", "--stop-fraction", fraction])
    assert result.exit_code != 0 and "stop-fraction" in result.output


def test_stop_fraction_runs_the_last_steps_unshifted(make_shifted_pdae):
    """decode_from_noise against a sampler that switches the shift off after counting its steps."""
    model = make_shifted_pdae(latent_dim=4)
    z = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    for fraction, steps, unshifted in ((0.3, 10, 3), (0.9, 4, 4), (0.0, 5, 0)):
        calls = []
        shifted, plain = shifted_eps(model, z), eps_of(model.dpm, 1)

        def by_count(x, t):
            calls.append(1)
            return shifted(x, t) if len(calls) <= steps - unshifted else plain(x, t)

        noise = SeededNoise([0, 1])
        x_T = noise(torch.empty(2, 1, 8, 8))
        with torch.no_grad():
            expected = sample_ddim(by_count, x_T, model.schedule, model.schedule.timesteps(steps), clip_x0=True,
                                   noise=noise)
        got = decode_from_noise(model, z, [0, 1], StepCounts(decoding=steps), stop_fraction=fraction)
        torch.testing.assert_close(got, expected)


def test_latent_dpm_is_found_where_latent_fit_puts_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir, run_file = tmp_path / "run", tmp_path / "pdae.safetensors"
    run_dir.mkdir()
    run_file.write_bytes(b"")
    assert latent_path(run_dir) == default_latent_run(run_dir) == run_dir / "latent"
    assert latent_path(run_file) == default_latent_run(run_file) == Path("pdae_latent")  # trained here
    (tmp_path / "pdae_latent.safetensors").write_bytes(b"")
    assert latent_path(run_file) == tmp_path / "pdae_latent.safetensors"  # shipped beside the PDAE


def test_the_shipped_pdae_samples_out_of_the_box(tmp_path):
    """`pdae sample` on the shipped MNIST PDAE finds the latent DPM shipped beside it."""
    npz = tmp_path / "s.npz"
    result = runner.invoke(app, ["sample", str(SHIPPED_PDAE), "-n", "2", "--steps", "3", "--latent-steps", "3",
                                 "--npz", str(npz), "-o", str(tmp_path / "s.png"), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert np.load(npz)["samples"].shape == (2, 1, 28, 28)
