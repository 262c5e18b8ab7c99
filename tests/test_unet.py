"""ADM UNet: shapes, guided-diffusion parameter names, the encoder/decoder split, attention maths."""

import re

import pytest
import torch

from pdae.backbones.adm import PRESETS, preset_name
from pdae.errors import PdaeError
from pdae.nn.unet import AttentionBlock, UNet, UNetConfig, timestep_embedding

TINY = UNetConfig(image_size=8, in_channels=1, model_channels=32, out_channels=1, num_res_blocks=1,
                  attention_resolutions=(2,), channel_mult=(1, 2))


def randomise(model: torch.nn.Module) -> torch.nn.Module:
    """Fill every weight with noise, so that zero-initialised layers do not hide mistakes."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return model


@pytest.mark.parametrize("learn_sigma,channels", [(False, 1), (True, 3)])
def test_output_shapes(learn_sigma, channels):
    cfg = UNetConfig(**{**TINY.to_dict(), "learn_sigma": learn_sigma, "in_channels": channels,
                        "out_channels": channels})
    out = UNet(cfg)(torch.randn(2, channels, 8, 8), torch.tensor([0, 999]))
    assert out.shape == (2, channels * (2 if learn_sigma else 1), 8, 8)


def test_class_conditional_needs_labels_and_uses_them():
    model = randomise(UNet(UNetConfig(**{**TINY.to_dict(), "num_classes": 3})))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5, 5])
    assert not torch.allclose(model(x, t, torch.tensor([0, 0])), model(x, t, torch.tensor([1, 1])))
    with pytest.raises(PdaeError, match="class-conditional"):
        model(x, t)


def test_parameter_names_follow_guided_diffusion():
    cfg = UNetConfig(image_size=16, in_channels=3, model_channels=32, out_channels=3, num_res_blocks=2,
                     attention_resolutions=(2,), channel_mult=(1, 2, 2), learn_sigma=True, num_classes=10)
    names = UNet(cfg).state_dict().keys()
    expected = {
        "time_embed.0.weight", "time_embed.2.weight", "label_emb.weight", "input_blocks.0.0.weight",
        "input_blocks.1.0.in_layers.0.weight", "input_blocks.1.0.in_layers.2.weight",
        "input_blocks.1.0.emb_layers.1.weight", "input_blocks.1.0.out_layers.0.weight",
        "input_blocks.1.0.out_layers.3.weight", "input_blocks.3.0.op.weight",
        "input_blocks.4.0.skip_connection.weight", "input_blocks.4.1.norm.weight",
        "input_blocks.4.1.qkv.weight",
        "input_blocks.4.1.proj_out.weight", "middle_block.0.in_layers.2.weight", "middle_block.1.qkv.weight",
        "middle_block.2.out_layers.3.bias", "output_blocks.0.0.skip_connection.weight",
        "output_blocks.2.1.conv.weight", "output_blocks.5.2.conv.weight", "out.0.weight", "out.2.weight",
    }
    assert expected <= set(names), expected - set(names)
    # guided-diffusion's block counts: 1 + levels * blocks + (levels - 1) in, levels * (blocks + 1) out.
    assert len({n.split(".")[1] for n in names if n.startswith("input_blocks.")}) == 1 + 3 * 2 + 2
    assert len({n.split(".")[1] for n in names if n.startswith("output_blocks.")}) == 3 * 3
    assert UNet(cfg).state_dict()["out.2.weight"].shape == (6, 32, 3, 3)


def test_resblock_updown_names():
    cfg = UNetConfig(**{**TINY.to_dict(), "resblock_updown": True})
    names = set(UNet(cfg).state_dict())
    assert "input_blocks.2.0.in_layers.2.weight" in names and "input_blocks.2.0.op.weight" not in names
    assert "output_blocks.1.2.in_layers.2.weight" in names


def test_output_starts_at_zero_like_guided_diffusion():
    out = UNet(TINY)(torch.randn(2, 1, 8, 8), torch.tensor([3, 400]))
    assert torch.count_nonzero(out) == 0


def test_encode_decode_split_equals_forward():
    model = randomise(UNet(UNetConfig(**{**TINY.to_dict(), "learn_sigma": True}))).eval()
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([0, 10, 999])
    emb = model.time_embedding(t)
    h, skips = model.encode(x, emb)
    assert h.shape == (3, 64, 4, 4) and len(skips) == len(model.input_blocks)
    full = model(x, t)
    torch.testing.assert_close(model.decode(h, skips, emb), full[:, :1])
    assert full.shape[1] == 2


def test_attention_matches_guided_diffusion_legacy_head_layout():
    torch.manual_seed(1)
    block = randomise(AttentionBlock(64, num_heads=4))
    x = torch.randn(2, 64, 3, 5)
    b, c, length, heads = 2, 64, 15, 4
    qkv = block.qkv(block.norm(x).reshape(b, c, length))
    q, k, v = qkv.reshape(b * heads, 3 * c // heads, length).split(c // heads, dim=1)
    weights = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / (c // heads) ** 0.5, dim=-1)
    h = torch.einsum("bts,bcs->bct", weights, v).reshape(b, c, length)
    expected = x + block.proj_out(h).reshape(b, c, 3, 5)
    torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


def test_timestep_embedding_is_cos_then_sin():
    emb = timestep_embedding(torch.tensor([0.0, 2.0]), 8)
    assert emb.shape == (2, 8)
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    freqs = torch.exp(-torch.log(torch.tensor(10000.0)) * torch.arange(4) / 4)
    torch.testing.assert_close(emb[1], torch.cat([torch.cos(2 * freqs), torch.sin(2 * freqs)]))


def test_image_size_must_fit_the_downsampling():
    with pytest.raises(PdaeError, match="not divisible"):
        UNet(UNetConfig(**{**TINY.to_dict(), "image_size": 9}))


# (image size, channels, pixel sizes of the attention layers, the middle block's included)
PRESET_USES = {"tiny": (28, 1, {14}), "small": (28, 1, {7}), "wide": (28, 1, {7}), "base": (32, 1, {8, 4}),
               "adm-32": (32, 3, {16, 8, 4}), "adm-32-cpu": (32, 3, {16, 8}), "adm-64": (64, 3, {16, 8}),
               "adm-64-cpu": (64, 3, {16, 8})}


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_at_its_size_as_its_help_says(name):
    size, channels, attention_px = PRESET_USES[name]
    config = PRESETS[name](size, channels)
    unet = UNet(config).eval()
    stated = float(re.search(r"([\d.]+)M", PRESETS[name].description).group(1))  # e.g. "69M" in --help
    assert sum(p.numel() for p in unet.parameters()) / 1e6 == pytest.approx(stated, rel=0.05)
    assert preset_name(config) == name
    seen: set[int] = set()
    for block in unet.modules():
        if isinstance(block, AttentionBlock):
            block.register_forward_pre_hook(lambda _, inputs: seen.add(inputs[0].shape[-1]))
    with torch.no_grad():  # batch 1, no backward: the 64 px preset has 69M parameters
        out = unet(torch.randn(1, channels, size, size), torch.tensor([999]))
    assert out.shape == (1, channels, size, size) and seen == attention_px
    assert config.dropout == (0.1 if name.startswith("adm") else 0.0)


def test_a_preset_for_one_resolution_refuses_others_and_other_architectures_are_custom():
    with pytest.raises(PdaeError, match="preset adm-64 is made for 64x64 images, not 28x28: pass "
                                        "--image-size 64"):
        PRESETS["adm-64"](28, 3)
    assert preset_name(PRESETS["adm-64"](64, 1)) == "adm-64"  # the architecture, whatever the channels
    assert preset_name(UNetConfig(**{**PRESETS["adm-64"](64, 3).to_dict(), "dropout": 0.0})) == "custom"
    assert preset_name(TINY) == "tiny"
    assert preset_name(UNetConfig(**{**TINY.to_dict(), "num_heads": 2})) == "custom"
