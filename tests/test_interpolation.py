"""Interpolation: lerp and slerp by hand, end frames that reconstruct the inputs, trajectory mixing of G
with the frozen DPM run once per step, the smoothness score, and `pdae interpolate` end to end."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from pdae.autoencode import StepCounts, reconstruct
from pdae.cli import app
from pdae.interpolation import interpolate, lerp, slerp, smoothness
from pdae.model import PDAE
from pdae.sampling import mixed_shift_eps, shifted_eps

runner = CliRunner()
torch.set_num_threads(1)
@pytest.fixture(scope="module")
def model(make_shifted_pdae) -> PDAE:
    return make_shifted_pdae(latent_dim=4)


def test_lerp_and_slerp_against_hand_computation():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    weights = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(lerp(a, b, weights), torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]))
    half = math.sqrt(0.5)  # the quarter circle's midpoint: unit norm, where lerp's has norm 0.71
    torch.testing.assert_close(slerp(a, b, weights), torch.tensor([[1.0, 0.0], [half, half], [0.0, 1.0]]))
    torch.testing.assert_close(slerp(a, 2 * a, weights), lerp(a, 2 * a, weights))  # parallel: a line


def test_slerp_keeps_the_norm_of_gaussian_codes():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 8, 8, generator=g), torch.randn(1, 8, 8, generator=g)
    rows = slerp(a, b, torch.linspace(0, 1, 5))
    assert rows.shape == (5, 1, 8, 8)
    assert rows.flatten(1).norm(dim=1).std() < 0.05 * a.norm()  # lerp's midpoint would lose ~30 %
    assert lerp(a, b, torch.tensor([0.5])).norm() < 0.8 * a.norm()


def test_mixed_shift_is_the_mix_of_the_shifted_eps_and_runs_the_frozen_dpm_once(model):
    x_t, t = torch.randn(3, 1, 8, 8), torch.tensor([10, 400, 900])
    z_a, z_b = torch.randn(3, 4), torch.randn(3, 4)
    w = torch.tensor([0.0, 0.3, 1.0])
    calls = []
    hook = model.dpm.middle_block.register_forward_hook(lambda *_: calls.append(1))
    mixed = mixed_shift_eps(model, [z_a, z_b], [1 - w, w])(x_t, t)
    hook.remove()
    assert len(calls) == 1
    expected = (1 - w).view(-1, 1, 1, 1) * shifted_eps(model, z_a)(x_t, t) + w.view(-1, 1, 1, 1) * shifted_eps(
        model, z_b)(x_t, t)
    torch.testing.assert_close(mixed, expected)


@pytest.mark.parametrize("mode", ["lerp", "trajectory"])
def test_end_frames_reconstruct_the_inputs(model, mode):
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    steps = StepCounts(inversion=8, decoding=8)
    frames = interpolate(model, x[0], x[1], 5, steps, mode)
    assert frames.shape == (5, 1, 8, 8)
    ends = reconstruct(model, x, steps, seeds=[0, 1])["inferred_xT"]
    # batches of another size round differently, and this random model amplifies that over 16 steps
    torch.testing.assert_close(frames[[0, -1]], ends, atol=1e-3, rtol=1e-3)


def test_trajectory_and_lerp_differ_between_the_ends(model):
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    steps = StepCounts(inversion=8, decoding=8)
    by_lerp, by_trajectory = (interpolate(model, x[0], x[1], 3, steps, mode) for mode in ("lerp", "trajectory"))
    assert (by_lerp[1] - by_trajectory[1]).abs().max() > 1e-4  # G is not linear in z


def test_smoothness_of_a_straight_path_and_of_a_detour():
    a, b = torch.zeros(1, 2, 2), torch.ones(1, 2, 2)
    straight = lerp(a, b, torch.linspace(0, 1, 5))
    assert smoothness(straight) == pytest.approx(0.25)
    detour = straight.clone()
    detour[2] += 3
    assert smoothness(detour) > 0.5


def test_pdae_interpolate_writes_frames_and_smoothness(tmp_path):
    """The public command on the shipped MNIST PDAE, two held-out test digits by index."""
    out = tmp_path / "interp.png"
    result = runner.invoke(app, ["interpolate", "0", "1", "--frames", "4", "--mode", "both",
                                 "--inversion-steps", "5", "--decoding-steps", "5", "-o", str(out),
                                 "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_suffix(".json").read_text())
    assert set(report["smoothness"]) == {"lerp", "trajectory"}
    assert all(1 / 3 <= value < 3 for value in report["smoothness"].values())
    assert out.stat().st_size > 0
