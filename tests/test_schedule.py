"""The schedule's coefficients against hand computations (DESIGN.md §1)."""

import math

import pytest
import torch

from pdae.errors import PdaeError
from pdae.schedule import NoiseSchedule


def hand_alpha_bars(betas: list[float]) -> list[float]:
    out, prod = [], 1.0
    for beta in betas:
        prod *= 1 - beta
        out.append(prod)
    return out


def test_linear_betas_match_ddpm_endpoints_and_rescale_with_T():
    assert NoiseSchedule("linear", 1000).betas[[0, -1]].tolist() == pytest.approx([1e-4, 0.02])
    assert NoiseSchedule("linear", 100).betas[[0, -1]].tolist() == pytest.approx([1e-3, 0.2])


def test_cosine_alpha_bar_follows_the_cosine_law():
    schedule = NoiseSchedule("cosine", 1000)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 10, 500, 900):
        assert schedule.alpha_bar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert schedule.betas.max() <= 0.999


def test_coefficients_against_hand_computation():
    schedule = NoiseSchedule("linear", 50)
    betas = schedule.betas.tolist()
    abar = hand_alpha_bars(betas)
    for t in (0, 3, 49):
        abar_prev = 1.0 if t == 0 else abar[t - 1]
        alpha = 1 - betas[t]
        snr = abar[t] / (1 - abar[t])
        assert schedule.alpha_bar[t].item() == pytest.approx(abar[t], rel=1e-12)
        assert schedule.posterior_variance[t].item() == pytest.approx(
            betas[t] * (1 - abar_prev) / (1 - abar[t]))
        c_t = -math.sqrt(alpha) * (1 - abar_prev) / math.sqrt(1 - abar[t])
        assert schedule.shift_coef[t].item() == pytest.approx(c_t, rel=1e-12, abs=1e-15)
        assert schedule.loss_weight(0.1)[t].item() == pytest.approx(snr**0.1 / (1 + snr), rel=1e-12)
        assert schedule.loss_weight(0.5)[t].item() == pytest.approx(snr**0.5 / (1 + snr), rel=1e-12)
        assert schedule.min_snr_weight(5.0)[t].item() == pytest.approx(min(snr, 5.0) / snr, rel=1e-12)
    assert schedule.shift_coef[0].item() == 0.0
    assert schedule.posterior_variance[0].item() == 0.0
    assert schedule.min_snr_weight(5.0)[0].item() < 0.02 and schedule.min_snr_weight(5.0)[49].item() == 1.0


def test_posterior_mean_equals_the_eps_form_of_ddpm():
    schedule = NoiseSchedule("linear", 1000)
    x0, eps = torch.randn(5, 1, 4, 4, dtype=torch.float64), torch.randn(5, 1, 4, 4, dtype=torch.float64)
    t = torch.tensor([1, 10, 300, 700, 999])
    x_t = schedule.q_sample(x0, t, eps)
    beta, abar = schedule.at(schedule.betas, t, x_t), schedule.at(schedule.alpha_bar, t, x_t)
    eps_form = (x_t - beta / (1 - abar).sqrt() * eps) / (1 - beta).sqrt()  # DDPM eq. 11
    torch.testing.assert_close(schedule.posterior_mean(x0, x_t, t), eps_form)


def test_q_sample_and_x0_eps_conversions_round_trip():
    schedule = NoiseSchedule("cosine", 1000)
    x0, eps = torch.randn(4, 3, 2, 2, dtype=torch.float64), torch.randn(4, 3, 2, 2, dtype=torch.float64)
    t = torch.tensor([0, 5, 500, 998])
    x_t = schedule.q_sample(x0, t, eps)
    torch.testing.assert_close(schedule.x0_from_eps(x_t, t, eps), x0)
    torch.testing.assert_close(schedule.eps_from_x0(x_t, t, x0), eps)


def test_alpha_bar_at_minus_one_is_the_clean_image():
    schedule = NoiseSchedule("linear", 1000)
    values = schedule.alpha_bar_at(torch.tensor([-1, 0, 999]))
    assert values[0].item() == 1.0
    assert values[1:].tolist() == schedule.alpha_bar[[0, 999]].tolist()


@pytest.mark.parametrize("num_steps", [1, 10, 100, 999, 1000])
def test_respacing_gives_exactly_n_distinct_steps_ending_at_t_max(num_steps):
    steps = NoiseSchedule("linear", 1000).timesteps(num_steps)
    assert len(steps) == num_steps == len(set(steps.tolist()))
    assert steps[-1].item() == 999 and steps.min() >= 0
    assert torch.all(steps[1:] > steps[:-1])


def test_full_respacing_is_every_step_and_bad_counts_are_refused():
    schedule = NoiseSchedule("linear", 1000)
    assert torch.equal(schedule.timesteps(1000), torch.arange(1000))
    for bad in (0, 1001):
        with pytest.raises(PdaeError, match="number of steps"):
            schedule.timesteps(bad)
    with pytest.raises(PdaeError, match="unknown noise schedule"):
        NoiseSchedule("quadratic", 10)
