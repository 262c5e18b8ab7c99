"""PDAE model and loss: equals the DPM at initialisation, never touches frozen weights, loss by hand."""

import math
from dataclasses import replace

import pytest
import torch

from pdae.device import SavedTensorBytes
from pdae.losses import PDAELoss
from pdae.model import PDAE, PDAEConfig, build_pdae
from pdae.nn.unet import UNet, UNetConfig
from pdae.sampling import eps_of, shifted_eps
from pdae.schedule import NoiseSchedule
from pdae.training import adamw

TINY = UNetConfig(image_size=8, in_channels=1, model_channels=32, out_channels=1, num_res_blocks=1,
                  attention_resolutions=(2,), channel_mult=(1, 2), dropout=0.1)
SCHEDULE = NoiseSchedule("linear", 100)


def tiny_pdae(**overrides) -> PDAE:
    torch.manual_seed(0)
    dpm = UNet(TINY)
    with torch.no_grad():  # a "pre-trained" DPM: no zero layers left
        for p in dpm.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return PDAE(dpm, SCHEDULE, PDAEConfig(latent_dim=8, **overrides))


@pytest.mark.parametrize("coef", ["trained", "reference"])
def test_pdae_equals_the_dpm_at_initialisation(coef):
    model = tiny_pdae(sampling_coef=coef)
    x_t, t = torch.randn(3, 1, 8, 8), torch.tensor([0, 50, 99])
    z = model.encode(torch.randn(3, 1, 8, 8))
    eps, shift = model.eps_and_shift(x_t, t, z)
    assert torch.count_nonzero(shift) == 0
    torch.testing.assert_close(shifted_eps(model, z)(x_t, t), eps_of(model.dpm, 1)(x_t, t))


def test_training_steps_never_change_or_grad_the_frozen_dpm():
    model = tiny_pdae()
    frozen = {k: v.clone() for k, v in model.dpm.state_dict().items()}
    trainable = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("dpm.")}
    opt = adamw(model, lr=1e-2, weight_decay=0.1)  # pdae's optimiser: fused, on the trainable parameters
    loss_fn = PDAELoss(SCHEDULE)
    model.train()
    for _ in range(3):
        loss_fn(model, torch.rand(4, 1, 8, 8) * 2 - 1, torch.zeros(4)).mean().backward()
        opt.step()
        opt.zero_grad()
    assert not model.dpm.training
    assert all(p.grad is None for p in model.dpm.parameters())
    assert all(torch.equal(v, frozen[k]) for k, v in model.dpm.state_dict().items())
    changed = [k for k, v in model.state_dict().items()
               if k in trainable and not torch.equal(v, trainable[k])]
    assert any(k.startswith("encoder.") for k in changed) and any(k.startswith("decoder.") for k in changed)


def test_loss_matches_a_hand_computation():
    model = tiny_pdae()
    with torch.no_grad():  # make G non-zero so that c_t matters
        for p in model.decoder.out.parameters():
            p.normal_(0, 0.1)
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    torch.manual_seed(123)
    loss = PDAELoss(SCHEDULE, gamma=0.1)(model, x0, torch.zeros(4))

    torch.manual_seed(123)
    t = torch.randint(0, 100, (4,))
    eps = torch.randn_like(x0)
    betas = [1e-4 * 10 + (0.02 * 10 - 1e-4 * 10) * i / 99 for i in range(100)]
    expected = []
    for i in range(4):
        ti = int(t[i])
        abar = math.prod(1 - b for b in betas[: ti + 1])
        abar_prev = math.prod(1 - b for b in betas[:ti])
        c_t = -math.sqrt(1 - betas[ti]) * (1 - abar_prev) / math.sqrt(1 - abar)
        snr = abar / (1 - abar)
        x_t = math.sqrt(abar) * x0[i : i + 1] + math.sqrt(1 - abar) * eps[i : i + 1]
        eps_theta, g = model(x_t, t[i : i + 1], x0[i : i + 1])
        expected.append(snr**0.1 / (1 + snr) * ((eps[i] - eps_theta[0] - c_t * g[0]) ** 2).mean())
    torch.testing.assert_close(loss, torch.stack(expected).detach(), rtol=1e-4, atol=1e-7)


def test_the_frozen_branch_runs_channels_last_on_the_cpu_with_the_same_eps_and_shift():
    torch.manual_seed(0)
    dpm = UNet(replace(TINY, in_channels=3, out_channels=3))
    model = PDAE(dpm, SCHEDULE, PDAEConfig(latent_dim=8, init_from_dpm=True))
    with torch.no_grad():  # a non-zero G
        for p in model.decoder.out.parameters():
            p.normal_(0, 0.1)
    layouts = []
    model.dpm.input_blocks[0].register_forward_hook(
        lambda module, inputs, output: layouts.append(inputs[0].is_contiguous(memory_format=torch.channels_last)
                                                      and not inputs[0].is_contiguous()))
    x_t, t, z = torch.randn(3, 3, 8, 8), torch.tensor([0, 50, 99]), torch.randn(3, 8)
    model.frozen_channels_last = False
    eps_nchw, shift_nchw = model.eps_and_shift(x_t, t, z)
    model.frozen_channels_last = True
    eps, shift = model.eps_and_shift(x_t, t, z)
    assert layouts == [False, True]
    assert eps.is_contiguous() and shift.is_contiguous()  # callers see the usual layout
    torch.testing.assert_close(eps, eps_nchw, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(shift, shift_nchw, rtol=1e-5, atol=1e-6)
    assert shift.abs().max() > 1e-3


def test_init_from_dpm_copies_the_decoder_but_keeps_the_output_at_zero():
    model = tiny_pdae(init_from_dpm=True)
    dpm_state, dec_state = model.dpm.state_dict(), model.decoder.state_dict()
    assert torch.equal(dec_state["middle_block.0.in_layers.2.weight"],
                       dpm_state["middle_block.0.in_layers.2.weight"])
    assert torch.equal(dec_state["output_blocks.1.0.out_layers.3.weight"],
                       dpm_state["output_blocks.1.0.out_layers.3.weight"])
    assert torch.count_nonzero(dec_state["out.2.weight"]) == 0
    assert "output_blocks.1.0.z_layers.weight" in dec_state


def test_config_rebuilds_the_same_architecture():
    model = tiny_pdae(gamma=0.3)
    rebuilt = build_pdae(model.to_config())
    assert rebuilt.cfg == model.cfg
    assert ({k: v.shape for k, v in rebuilt.state_dict().items()}
            == {k: v.shape for k, v in model.state_dict().items()})


def test_shared_z_pathway_projects_z_once_and_feeds_every_block():
    model = tiny_pdae(z_pathway="shared", init_from_dpm=True)  # no zero-initialised convs left in G
    assert model.z_projection[0].out_features == model.dpm.embedding_dim
    assert model.decoder.middle_block[0].z_layers.in_features == model.dpm.embedding_dim
    with torch.no_grad():
        for p in model.decoder.out.parameters():
            p.normal_(0, 0.1)
    x_t, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 70])
    z = model.encode(torch.randn(2, 1, 8, 8))
    _, shift = model.eps_and_shift(x_t, t, z)
    _, moved = model.eps_and_shift(x_t, t, z + 1)
    assert (shift - moved).abs().max() > 1e-4  # z reaches G through the projection
    per_block = tiny_pdae()
    assert not any(k.startswith("z_projection") for k in per_block.state_dict())  # old checkpoints load
    rebuilt = build_pdae(model.to_config())
    assert rebuilt.cfg.z_pathway == "shared" and set(rebuilt.state_dict()) == set(model.state_dict())


def test_frozen_branch_keeps_full_precision_under_bf16_autocast():
    model = tiny_pdae()
    x_t, t, z = torch.randn(2, 1, 8, 8), torch.tensor([5, 60]), torch.randn(2, 8)
    exact, _ = model.eps_and_shift(x_t, t, z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        guarded, shift = model.eps_and_shift(x_t, t, z)
    assert guarded.dtype == torch.float32 and shift.dtype == torch.bfloat16
    torch.testing.assert_close(guarded, exact)
    fast = tiny_pdae(frozen_bf16=True)
    torch.testing.assert_close(fast.eps_and_shift(x_t, t, z)[0], exact)  # no autocast outside training
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rough, _ = fast.eps_and_shift(x_t, t, z)
    assert (rough.float() - exact).abs().max() > 1e-4  # what the old behaviour gave G as its base


def test_gradient_checkpointing_keeps_the_gradients_and_stores_less_for_backward():
    """Same loss and gradients (dropout in G replayed), and G's activations are no longer kept."""
    model = tiny_pdae().train()
    with torch.no_grad():  # G's output conv starts at zero: move it, so every G weight gets a gradient
        for p in model.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x0, loss_fn = torch.rand(4, 1, 8, 8) * 2 - 1, PDAELoss(SCHEDULE)
    results = {}
    for checkpointing in (False, True):
        model.gradient_checkpointing = checkpointing
        model.zero_grad()
        torch.manual_seed(1)
        with SavedTensorBytes() as saved:
            loss = loss_fn(model, x0, torch.zeros(4)).mean()
        loss.backward()
        results[checkpointing] = (loss.item(), [p.grad.clone() for p in model.parameters() if p.requires_grad],
                                  saved.bytes)
    (plain_loss, plain_grads, plain_bytes), (loss, grads, saved_bytes) = results[False], results[True]
    assert loss == plain_loss
    for plain, checkpointed in zip(plain_grads, grads):
        torch.testing.assert_close(checkpointed, plain)
    assert sum(p.grad.abs().sum() for p in model.decoder.parameters()) > 0
    assert saved_bytes < plain_bytes / 2, (saved_bytes, plain_bytes)
