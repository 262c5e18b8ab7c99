"""DDIM decoding, DDPM (eta = 1) and inversion against hand computations and known eps functions."""

import math

import torch

from pdae.sampling import SeededNoise, inversion_evaluations, invert_ddim, sample_ddim
from pdae.schedule import NoiseSchedule

SCHEDULE = NoiseSchedule("linear", 1000)


def oracle_eps(x0_true: torch.Tensor):
    """The eps of a model that knows the data is the single image x0_true."""
    return lambda x, t: SCHEDULE.eps_from_x0(x, t, x0_true)


def toy_eps(x, t):
    """A smooth x- and t-dependent eps function with no special structure."""
    return torch.tanh(0.5 * x + t.double().view(-1, 1, 1, 1) / 1000)


def test_ten_step_ddim_matches_a_hand_written_loop():
    x = torch.randn(2, 1, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    steps = SCHEDULE.timesteps(10)
    got = sample_ddim(toy_eps, x.clone(), SCHEDULE, steps, clip_x0=False)
    abar = SCHEDULE.alpha_bar.tolist()
    ref, ts = x.clone(), steps.tolist()
    for i in reversed(range(10)):
        a, a_next = abar[ts[i]], (abar[ts[i - 1]] if i > 0 else 1.0)
        eps = torch.tanh(0.5 * ref + ts[i] / 1000)
        x0 = (ref - math.sqrt(1 - a) * eps) / math.sqrt(a)
        ref = math.sqrt(a_next) * x0 + math.sqrt(1 - a_next) * eps
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


def test_ddim_and_ddpm_with_oracle_eps_land_on_the_data_point():
    x0_true = torch.rand(3, 1, 4, 4) * 2 - 1
    x_T = torch.randn(3, 1, 4, 4)
    for eta, steps in ((0.0, 20), (1.0, 50), (1.0, 1000)):
        out = sample_ddim(oracle_eps(x0_true), x_T, SCHEDULE, SCHEDULE.timesteps(steps), eta=eta,
                          clip_x0=True)
        torch.testing.assert_close(out, x0_true, atol=1e-4, rtol=0)


def test_inversion_then_decoding_is_exact_when_eps_does_not_depend_on_x():
    field = torch.randn(1000, 1, 4, 4, dtype=torch.float64)
    eps_fn = lambda x, t: field[t]  # noqa: E731
    x0 = torch.rand(2, 1, 4, 4, dtype=torch.float64) * 2 - 1
    steps = SCHEDULE.timesteps(25)
    x_T = invert_ddim(eps_fn, x0, SCHEDULE, steps)
    assert not torch.allclose(x_T, x0)
    torch.testing.assert_close(sample_ddim(eps_fn, x_T, SCHEDULE, steps, clip_x0=False), x0)


def test_inversion_round_trip_is_close_for_a_smooth_eps_and_improves_with_steps():
    x0 = torch.rand(4, 1, 4, 4, dtype=torch.float64) * 1.6 - 0.8
    errors = []
    for n in (10, 100):
        steps = SCHEDULE.timesteps(n)
        recon = sample_ddim(toy_eps, invert_ddim(toy_eps, x0, SCHEDULE, steps), SCHEDULE, steps,
                            clip_x0=False)
        errors.append((recon - x0).abs().max().item())
    assert errors[1] < errors[0] / 5


def test_refined_inversion_converges_to_the_exact_inverse_of_decoding():
    """Few steps, a nonlinear eps: plain inversion misses; each refinement shrinks the round-trip error and
    enough of them solve decoding's step exactly (the fixed point of a contraction)."""
    x0 = torch.rand(4, 1, 4, 4, dtype=torch.float64) * 1.6 - 0.8
    steps = SCHEDULE.timesteps(5)
    errors = [(sample_ddim(toy_eps, invert_ddim(toy_eps, x0, SCHEDULE, steps, refine=k), SCHEDULE, steps,
                           clip_x0=False) - x0).abs().max().item() for k in (0, 1, 2, 4, 40)]
    assert errors[0] > 1e-2
    assert all(later < earlier / 2 for earlier, later in zip(errors, errors[1:]))
    assert errors[-1] < 1e-10


def test_refined_inversion_costs_the_evaluations_it_reports():
    for refine in (0, 1, 3):
        calls = []
        invert_ddim(lambda x, t: calls.append(1) or toy_eps(x, t), torch.zeros(1, 1, 2, 2, dtype=torch.float64),
                    SCHEDULE, SCHEDULE.timesteps(7), refine=refine)
        assert len(calls) == inversion_evaluations(7, refine)
    assert inversion_evaluations(20, 2) == 41  # the first step's guess costs one more


def test_decoding_clips_predicted_x0_only_when_asked():
    far = lambda x, t: -10 * torch.ones_like(x)  # noqa: E731 - predicts x0 far outside [-1, 1]
    x_T = torch.zeros(1, 1, 2, 2)
    steps = SCHEDULE.timesteps(5)
    assert sample_ddim(far, x_T, SCHEDULE, steps, clip_x0=True).abs().max() <= 1.0 + 1e-6
    assert sample_ddim(far, x_T, SCHEDULE, steps, clip_x0=False).abs().max() > 1.5


def test_seeded_noise_rows_depend_only_on_their_own_seed():
    like = torch.empty(3, 1, 2, 2)
    batch = SeededNoise([7, 8, 9])(like)
    alone = SeededNoise([8])(like[:1])
    torch.testing.assert_close(batch[1], alone[0])
    assert not torch.allclose(batch[0], batch[1])
