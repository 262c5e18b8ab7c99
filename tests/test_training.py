"""The training loop: EMA and learning-rate schedules, the stateless data stream, run folders,
exact resume, and data-parallel training over two processes (gloo)."""

from __future__ import annotations

import itertools
import json
import os
import socket
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Dataset

from pdae.backbones import build_dpm, dpm_config, load_dpm
from pdae.checkpoint import WEIGHTS_NAME, load_training_state, load_weights, read_progress
from pdae.data import EpochBatches, epoch_permutation, open_dataset, training_batches
from pdae.errors import DataError, PdaeError
from pdae.losses import EpsLoss
from pdae.nn.unet import UNetConfig
from pdae.schedule import NoiseSchedule
from pdae.training import (
    CONFIG_NAME,
    TRAIN_STATE_NAME,
    DistributedContext,
    TrainConfig,
    ema_decay,
    learning_rate,
    train,
    TrainableEMA,
)

TINY_UNET = UNetConfig(image_size=8, in_channels=1, model_channels=32, out_channels=1, num_res_blocks=1,
                       attention_resolutions=(2,), channel_mult=(1, 2))
SCHEDULE = NoiseSchedule("linear", 100)


def tiny_dpm(seed: int = 0, dropout: float = 0.0):
    """A freshly initialised tiny DPM (UNet, schedule, config) from `seed`."""
    config = dpm_config(replace(TINY_UNET, dropout=dropout), SCHEDULE)
    torch.manual_seed(seed)
    unet, schedule = build_dpm(config)
    return unet, schedule, config


def write_npz(path: Path, count: int = 10, size: int = 8) -> Path:
    """Asymmetric uint8 images (so that a horizontal flip changes them) with labels."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, size, size), dtype=np.uint8)
    images[:, :, : size // 2] //= 4  # darker left half: flips are visible
    np.savez(path, images=images, labels=np.arange(count) % 3)
    return path


class Patterns(Dataset):
    """Two easy patterns (left or right half bright), as (image, label) items in [-1, 1]."""

    def __init__(self, count: int = 16):
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = -torch.ones(1, 8, 8)
        if i % 2:
            x[..., :4] = 1.0
        else:
            x[..., 4:] = 1.0
        return x, i % 2


def states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def mismatched(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    return sorted(k for k in a if k not in b or not torch.equal(a[k], b[k]))


# ---------------------------------------------------------------- EMA


def test_ema_decay_halflife_in_images():
    cfg = TrainConfig(ema_halflife_images=1000, ema_rampup_ratio=0.0)
    for batch in (1, 10, 64):
        assert ema_decay(batch, 10**6, cfg) == pytest.approx(0.5 ** (batch / 1000), rel=1e-12)
    # after exactly one half-life of images the old value weighs one half, whatever the batch size
    for batch in (10, 50, 250):
        assert ema_decay(batch, 5000, cfg) ** (1000 // batch) == pytest.approx(0.5, rel=1e-9)
    # without ramp-up the decay does not depend on how far training is
    assert ema_decay(10, 10, cfg) == ema_decay(10, 10**7, cfg)


def test_ema_decay_rampup():
    cfg = TrainConfig(ema_halflife_images=1000, ema_rampup_ratio=0.05)
    # early: the half-life is 5% of the images seen (100 -> 5 images)
    assert ema_decay(10, 100, cfg) == pytest.approx(0.5 ** (10 / 5), rel=1e-12)
    # late: capped at the configured half-life (0.05 * 1e6 > 1000)
    assert ema_decay(10, 10**6, cfg) == pytest.approx(0.5 ** (10 / 1000), rel=1e-12)
    # no images seen: the EMA just copies the network
    assert ema_decay(10, 0, cfg) == 0.0
    decays = [ema_decay(8, n, cfg) for n in range(8, 40000, 8)]
    assert all(0 <= d < 1 for d in decays)
    assert decays == sorted(decays)


def test_ema_averages_the_trained_parameters_and_holds_nothing_else():
    class One(nn.Module):
        def __init__(self, value: float, buffer: float):
            super().__init__()
            self.w = nn.Parameter(torch.tensor([value]))
            self.frozen = nn.Parameter(torch.tensor([5.0]), requires_grad=False)
            self.register_buffer("b", torch.tensor([buffer]))

    net = One(2.0, 7.0)
    ema = TrainableEMA(net)
    assert set(ema.averages) == {"w"}  # no copy of frozen weights (PDAE's DPM) or buffers
    net.w.data.fill_(4.0)
    ema.update(0.75)
    assert ema.averages["w"].item() == pytest.approx(0.75 * 2.0 + 0.25 * 4.0)
    assert ema.full_state(net)["b"].item() == 7.0  # buffers come from the network
    assert ema.full_state(net)["frozen"].item() == 5.0
    assert net.w.item() == 4.0 and net.b.item() == 7.0  # the network is untouched

    # one half-life of updates toward a fixed target halves the distance to it
    cfg = TrainConfig(ema_halflife_images=1000, ema_rampup_ratio=0.0)
    net = One(0.0, 0.0).double()
    ema = TrainableEMA(net)
    net.w.data.fill_(1.0)
    for _ in range(1000 // 10):
        ema.update(ema_decay(10, 10**6, cfg))
    assert ema.averages["w"].item() == pytest.approx(0.5, abs=1e-9)

    ema.update(0.0)  # decay 0: a copy
    assert ema.averages["w"].item() == 1.0
    net.w.data.fill_(-3.0)
    ema.update(1.0)  # decay 1: frozen
    assert ema.averages["w"].item() == 1.0


# ---------------------------------------------------------------- learning rate


def test_learning_rate_warmup():
    cfg = TrainConfig(lr=1e-3, warmup_images=100)
    assert learning_rate(0, cfg) == pytest.approx(1e-3 / 100)  # first step is not a zero step
    assert learning_rate(49, cfg) == pytest.approx(0.5e-3)
    assert learning_rate(99, cfg) == pytest.approx(1e-3)
    assert learning_rate(100, cfg) == pytest.approx(1e-3)
    assert learning_rate(10**6, cfg) == pytest.approx(1e-3)
    rates = [learning_rate(n, cfg) for n in range(0, 300, 7)]
    assert rates == sorted(rates) and max(rates) == pytest.approx(1e-3)
    no_warmup = TrainConfig(lr=2e-4, warmup_images=0)
    assert learning_rate(0, no_warmup) == pytest.approx(2e-4)


# ---------------------------------------------------------------- data stream


SINGLE = DistributedContext(0, 1)


def batch_indices(num_items: int, batch: int, seed: int, step: int, ctx: DistributedContext) -> list[int]:
    """This rank's indices of global batch `step`, from a stream that starts there (as a resumed run's)."""
    return next(iter(EpochBatches(num_items, batch, seed, step, ctx.rank, ctx.world_size)))


@pytest.mark.parametrize("num_items, batch", [(12, 4), (10, 4), (7, 3), (5, 8)])
def test_batch_indices_cover_each_epoch_once(num_items, batch):
    steps = 3 * num_items  # long enough for 3 * batch full epochs
    stream = [i for step in range(steps) for i in batch_indices(num_items, batch, 5, step, SINGLE)]
    assert all(len(batch_indices(num_items, batch, 5, s, SINGLE)) == batch for s in range(steps))
    epochs = [stream[e * num_items:(e + 1) * num_items] for e in range(len(stream) // num_items)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(num_items))
    assert len({tuple(e) for e in epochs}) > 1  # each epoch has its own order
    assert stream[:num_items] != list(range(num_items)) or num_items < 3  # shuffled


def test_batch_indices_are_stateless_and_seeded():
    first = [batch_indices(10, 4, 3, step, SINGLE) for step in range(9)]
    again = [batch_indices(10, 4, 3, step, SINGLE) for step in reversed(range(9))][::-1]
    assert first == again  # any step can be recomputed alone, in any order
    other_seed = [batch_indices(10, 4, 4, step, SINGLE) for step in range(9)]
    assert other_seed != first


@pytest.mark.parametrize("num_items, batch", [(10, 4), (9, 8), (16, 2)])
def test_batch_indices_split_over_two_ranks(num_items, batch):
    for step in range(7):
        full = batch_indices(num_items, batch, 1, step, SINGLE)
        shares = [batch_indices(num_items, batch, 1, step, DistributedContext(rank, 2)) for rank in range(2)]
        assert [len(s) for s in shares] == [batch // 2] * 2
        assert sorted(shares[0] + shares[1]) == sorted(full)
        if len(set(full)) == len(full):  # no index repeated within the global batch
            assert not set(shares[0]) & set(shares[1])


def test_batch_indices_rank_shares_disjoint_within_an_epoch():
    ctxs = [DistributedContext(rank, 2) for rank in range(2)]
    for step in range(3):  # 12 items, batch 4: steps 0..2 are one epoch
        a, b = (batch_indices(12, 4, 0, step, c) for c in ctxs)
        assert not set(a) & set(b)


def test_each_epoch_order_is_built_once_not_per_step(monkeypatch):
    import pdae.data.loader as loader

    built = []

    def counting(num_items: int, seed: int, epoch: int) -> list[int]:
        built.append(epoch)
        return epoch_permutation(num_items, seed, epoch)

    monkeypatch.setattr(loader, "epoch_permutation", counting)
    batches = list(itertools.islice(iter(EpochBatches(10, 4, 2, start_step=3)), 20))  # items 12..91
    assert built == list(range(1, 10))  # epochs 1..9, once each, over 20 steps
    monkeypatch.undo()
    assert batches == [batch_indices(10, 4, 2, step, SINGLE) for step in range(3, 23)]


def test_an_empty_dataset_is_an_error_not_a_division_by_zero(tmp_path):
    dataset = open_dataset(write_npz(tmp_path / "d.npz", count=4), image_size=8, channels=1, limit=0)
    with pytest.raises(DataError, match="dataset is empty"):
        training_batches(dataset, 4, 0)


def test_image_dataset_items_are_keyed_by_seed_and_epoch(tmp_path):
    dataset = open_dataset(write_npz(tmp_path / "d.npz", count=10), image_size=8, channels=1, hflip=True)
    keys = next(iter(EpochBatches(10, 4, 7, start_step=2, keyed=True)))  # items 8..11: epochs 0 and 1
    assert [key[1:] for key in keys] == [(7, 0), (7, 0), (7, 1), (7, 1)]
    assert [key[0] for key in keys] == batch_indices(10, 4, 7, 2, SINGLE)
    x, labels = next(training_batches(dataset, 4, 7, start_step=2))
    assert torch.equal(x, torch.stack([dataset[key][0] for key in keys]))
    assert labels.tolist() == [dataset[key][1] for key in keys]


# ---------------------------------------------------------------- train


def fixed_batch_loss(net: nn.Module, schedule: NoiseSchedule, x0: torch.Tensor) -> float:
    """Mean EpsLoss over a fixed batch, t and noise (seeded), in eval mode."""
    was_training = net.training
    net.eval()
    torch.manual_seed(1234)
    with torch.no_grad():
        loss = EpsLoss(schedule)(net, x0, torch.zeros(len(x0), dtype=torch.long)).mean().item()
    net.train(was_training)
    return loss


def test_min_snr_weights_each_sample_of_the_eps_loss_by_hand():
    class Zero(nn.Module):  # predicts eps = 0, so the unweighted loss is mean(eps^2)
        def forward(self, x_t, t, condition):
            return torch.zeros_like(x_t)

    x0 = torch.rand(6, 1, 4, 4) * 2 - 1
    torch.manual_seed(5)
    loss = EpsLoss(SCHEDULE, min_snr=2.0)(Zero(), x0, torch.zeros(6))
    torch.manual_seed(5)
    t = torch.randint(0, 100, (6,))
    eps = torch.randn_like(x0)
    snr = SCHEDULE.alpha_bar[t] / (1 - SCHEDULE.alpha_bar[t])
    expected = eps.square().mean(dim=(1, 2, 3)) * (snr.clamp(max=2.0) / snr).float()
    torch.testing.assert_close(loss, expected)
    assert (snr > 2).any() and (snr < 2).any()  # both sides of the cap were drawn


def test_train_lowers_the_loss_and_writes_a_run(tmp_path):
    torch.set_num_threads(1)
    unet, schedule, config = tiny_dpm(seed=0)
    dataset = Patterns(16)
    x0 = torch.stack([dataset[i][0] for i in range(len(dataset))]).repeat(4, 1, 1, 1)
    before = fixed_batch_loss(unet, schedule, x0)
    cfg = TrainConfig(total_images=30 * 8, batch_size=8, lr=1e-3, warmup_images=0, ema_halflife_images=40,
                      ema_rampup_ratio=0.0, checkpoint_images=10**9, seed=0)
    run = tmp_path / "run"
    ema = train(unet, EpsLoss(schedule), dataset, cfg, run, config, description="test")
    assert ema is unet  # returned with its EMA weights in place; the raw ones are in the training state
    state = load_training_state(run / TRAIN_STATE_NAME)
    raw = tiny_dpm(seed=5)[0]
    raw.load_state_dict(state["model"])
    after, ema_after = fixed_batch_loss(raw, schedule, x0), fixed_batch_loss(ema, schedule, x0)
    assert after < 0.5 * before, (before, after)
    assert ema_after < 0.5 * before, (before, ema_after)

    # the run folder: config, EMA weights that rebuild the model, raw state for resume
    assert json.loads((run / CONFIG_NAME).read_text()) == json.loads(json.dumps({"model": config,
                                                                                 "train": asdict(cfg)}))
    weights, saved_config = load_weights(run / WEIGHTS_NAME)
    assert saved_config == json.loads(json.dumps(config))
    assert states_equal(weights, ema.state_dict())
    assert state["step"] == 30
    assert not states_equal(state["model"], weights)  # raw and EMA weights are different things
    assert state["optimizer"]["state"]  # Adam moments are kept
    loaded, _ = load_dpm(run)
    assert fixed_batch_loss(loaded, schedule, x0) == pytest.approx(ema_after, rel=1e-6)
    assert not any(p.name.endswith(".tmp") for p in run.iterdir())

    # never start over an existing run without --resume; the run is left as it was
    before_files = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    other_cfg = replace(cfg, total_images=16)
    with pytest.raises(PdaeError, match="already holds a run"):
        train(tiny_dpm(seed=1)[0], EpsLoss(schedule), dataset, other_cfg, run, config)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before_files

    # a finished run resumed with the same length does nothing more
    again = train(tiny_dpm(seed=2)[0], EpsLoss(schedule), dataset, cfg, run, config, resume=True)
    assert states_equal(again.state_dict(), weights)


def test_train_refuses_to_resume_nothing(tmp_path):
    unet, schedule, config = tiny_dpm()
    cfg = TrainConfig(total_images=8, batch_size=4)
    with pytest.raises(PdaeError, match="nothing to resume"):
        train(unet, EpsLoss(schedule), Patterns(4), cfg, tmp_path / "empty", config, resume=True)
    (tmp_path / "weights_only").mkdir()
    (tmp_path / "weights_only" / WEIGHTS_NAME).write_bytes(b"")
    with pytest.raises(PdaeError, match="nothing to resume"):
        train(unet, EpsLoss(schedule), Patterns(4), cfg, tmp_path / "weights_only", config, resume=True)
    # nor start over a folder that holds weights only
    with pytest.raises(PdaeError, match="already holds a run"):
        train(unet, EpsLoss(schedule), Patterns(4), cfg, tmp_path / "weights_only", config)


def test_train_rejects_a_batch_not_divisible_by_processes(tmp_path, monkeypatch):
    import pdae.training as training

    monkeypatch.setattr(training, "init_distributed", lambda device=None: DistributedContext(0, 3))
    unet, schedule, config = tiny_dpm()
    with pytest.raises(PdaeError, match="not divisible"):
        train(unet, EpsLoss(schedule), Patterns(4), TrainConfig(total_images=8, batch_size=4), tmp_path / "r",
              config)
    assert not (tmp_path / "r").exists()


def test_resume_repeats_an_uninterrupted_run_exactly(tmp_path):
    torch.set_num_threads(1)
    dataset = open_dataset(write_npz(tmp_path / "d.npz", count=10), image_size=8, channels=1, hflip=True)
    # 10 items, batch 4: batches straddle epochs; warm-up and EMA ramp-up straddle the resume point
    cfg = TrainConfig(total_images=24, batch_size=4, lr=1e-3, warmup_images=16, ema_halflife_images=20,
                      ema_rampup_ratio=0.5, checkpoint_images=8, bf16=False, seed=7)

    net_a, schedule, config = tiny_dpm(seed=0, dropout=0.3)
    initial = {k: v.clone() for k, v in net_a.state_dict().items()}
    ema_a = train(net_a, EpsLoss(schedule), dataset, cfg, tmp_path / "a", config)

    net_b = tiny_dpm(seed=0, dropout=0.3)[0]
    train(net_b, EpsLoss(schedule), dataset, replace(cfg, total_images=12), tmp_path / "b", config)
    assert load_training_state(tmp_path / "b" / TRAIN_STATE_NAME)["step"] == 3
    # a fresh process would build a fresh model: everything must come from the run folder
    net_b2 = tiny_dpm(seed=123, dropout=0.3)[0]
    torch.manual_seed(999)  # nor may the global RNG state leak into the run
    ema_b = train(net_b2, EpsLoss(schedule), dataset, cfg, tmp_path / "b", config, resume=True)

    state_a = load_training_state(tmp_path / "a" / TRAIN_STATE_NAME)
    state_b = load_training_state(tmp_path / "b" / TRAIN_STATE_NAME)
    assert state_a["step"] == state_b["step"] == 6
    assert not states_equal(state_a["model"], initial)
    assert mismatched(state_a["model"], state_b["model"]) == []
    assert mismatched(net_a.state_dict(), net_b2.state_dict()) == []
    weights_a, _ = load_weights(tmp_path / "a" / WEIGHTS_NAME)
    weights_b, _ = load_weights(tmp_path / "b" / WEIGHTS_NAME)
    assert mismatched(weights_a, weights_b) == []
    assert mismatched(ema_a.state_dict(), ema_b.state_dict()) == []
    for group_a, group_b in zip(state_a["optimizer"]["param_groups"], state_b["optimizer"]["param_groups"]):
        assert group_a["lr"] == group_b["lr"]
    for key, moments in state_a["optimizer"]["state"].items():
        for name, value in moments.items():
            assert torch.equal(value, state_b["optimizer"]["state"][key][name]), (key, name)


def test_resume_with_workers_repeats_a_run_without_them(tmp_path):
    torch.set_num_threads(1)
    dataset = open_dataset(write_npz(tmp_path / "d.npz", count=10), image_size=8, channels=1, hflip=True)
    cfg = TrainConfig(total_images=16, batch_size=4, lr=1e-3, warmup_images=0, checkpoint_images=8, seed=5)
    net_a, schedule, config = tiny_dpm(seed=0, dropout=0.3)
    train(net_a, EpsLoss(schedule), dataset, cfg, tmp_path / "a", config)

    # stopped after step 2 of 4, then resumed; both halves load in two worker processes
    net_b = tiny_dpm(seed=0, dropout=0.3)[0]
    train(net_b, EpsLoss(schedule), dataset, replace(cfg, total_images=8, workers=2), tmp_path / "b", config)
    net_b2 = tiny_dpm(seed=123, dropout=0.3)[0]
    train(net_b2, EpsLoss(schedule), dataset, replace(cfg, workers=2), tmp_path / "b", config, resume=True)
    assert mismatched(net_a.state_dict(), net_b2.state_dict()) == []
    weights_a, _ = load_weights(tmp_path / "a" / WEIGHTS_NAME)
    weights_b, _ = load_weights(tmp_path / "b" / WEIGHTS_NAME)
    assert mismatched(weights_a, weights_b) == []


def test_runs_with_another_seed_differ(tmp_path):
    """The exact-resume test above is meaningful only if the seed really drives the run."""
    torch.set_num_threads(1)
    dataset = open_dataset(write_npz(tmp_path / "d.npz", count=10), image_size=8, channels=1, hflip=True)
    cfg = TrainConfig(total_images=8, batch_size=4, lr=1e-3, warmup_images=0, checkpoint_images=10**9)
    results = []
    for i, seed in enumerate((0, 0, 1)):
        net, schedule, config = tiny_dpm(seed=0, dropout=0.3)
        train(net, EpsLoss(schedule), dataset, replace(cfg, seed=seed), tmp_path / f"r{i}", config)
        results.append(net.state_dict())
    assert states_equal(results[0], results[1])
    assert not states_equal(results[0], results[2])


# ---------------------------------------------------------------- data-parallel training


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, npz: str, run_dir: str, out_dir: str) -> None:
    """One of two training processes (module level so that spawn can pickle it)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    try:
        dataset = open_dataset(npz, image_size=8, channels=1, hflip=True)
        net, schedule, config = tiny_dpm(seed=0, dropout=0.1)
        cfg = TrainConfig(total_images=16, batch_size=8, lr=1e-3, warmup_images=0, checkpoint_images=8,
                          seed=3)
        ema = train(net, EpsLoss(schedule), dataset, cfg, Path(run_dir), config, description=f"rank {rank}")
        torch.save({"ema": ema.state_dict(), "world_size": dist.get_world_size()},
                   Path(out_dir) / f"rank{rank}.pt")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.slow  # two fresh interpreters importing torch: about 10 s on two cores
def test_data_parallel_training_keeps_ranks_in_sync(tmp_path):
    npz = write_npz(tmp_path / "d.npz", count=12)
    run = tmp_path / "run"
    mp.spawn(_ddp_worker, args=(free_port(), str(npz), str(run), str(tmp_path)), nprocs=2, join=True)

    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["world_size"] for r in results] == [2, 2]
    assert mismatched(results[0]["ema"], results[1]["ema"]) == []  # the EMA of the ranks' raw weights
    initial = tiny_dpm(seed=0, dropout=0.1)[0].state_dict()
    # zero-initialised output layers: not all move in 2 steps
    changed = mismatched(results[0]["ema"], initial)
    assert "out.2.weight" in changed and len(changed) >= 10

    # rank 0 wrote the run: config, EMA weights and the state of the last step
    assert (run / CONFIG_NAME).is_file()
    state = load_training_state(run / TRAIN_STATE_NAME)
    assert state["step"] == 2
    assert mismatched(state["ema"], results[0]["ema"]) == []
    weights, _ = load_weights(run / WEIGHTS_NAME)
    assert mismatched(weights, results[0]["ema"]) == []
    assert not any(p.name.endswith(".tmp") for p in run.iterdir())


def test_a_kill_between_the_two_checkpoint_writes_leaves_a_pair_that_resume_repairs(tmp_path, monkeypatch):
    import pdae.training as training

    torch.set_num_threads(1)
    dataset = open_dataset(write_npz(tmp_path / "d.npz", count=10), image_size=8, channels=1)
    cfg = TrainConfig(total_images=16, batch_size=4, lr=1e-3, warmup_images=0, checkpoint_images=8, seed=1)
    net, schedule, config = tiny_dpm(seed=0)
    reference = train(net, EpsLoss(schedule), dataset, cfg, tmp_path / "a", config)

    real_save_weights, calls = training.save_weights, []

    def dies_on_the_second_checkpoint(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:  # step 0's weights, the checkpoint of step 2, then that of step 4
            raise KeyboardInterrupt  # killed after the training state of step 4 was written
        real_save_weights(path, *args, **kwargs)

    monkeypatch.setattr(training, "save_weights", dies_on_the_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_dpm(seed=0)[0], EpsLoss(schedule), dataset, cfg, tmp_path / "b", config)
    monkeypatch.setattr(training, "save_weights", real_save_weights)
    assert load_training_state(tmp_path / "b" / TRAIN_STATE_NAME)["step"] == 4
    assert read_progress(tmp_path / "b" / WEIGHTS_NAME) == {"step": 2}  # the weights lag one checkpoint

    resumed = train(tiny_dpm(seed=9)[0], EpsLoss(schedule), dataset, cfg, tmp_path / "b", config, resume=True)
    assert mismatched(resumed.state_dict(), reference.state_dict()) == []
    weights, _ = load_weights(tmp_path / "b" / WEIGHTS_NAME)
    assert mismatched(weights, load_weights(tmp_path / "a" / WEIGHTS_NAME)[0]) == []
    assert read_progress(tmp_path / "b" / WEIGHTS_NAME) == {"step": 4}


def test_the_training_state_holds_no_frozen_weights(tmp_path):
    torch.set_num_threads(1)
    net, schedule, config = tiny_dpm(seed=0)
    net.time_embed.requires_grad_(False)  # frozen, like PDAE's DPM
    cfg = TrainConfig(total_images=8, batch_size=4, warmup_images=0, seed=0)
    train(net, EpsLoss(schedule), Patterns(4), cfg, tmp_path / "r", config)
    state = load_training_state(tmp_path / "r" / TRAIN_STATE_NAME)
    assert not any(k.startswith("time_embed.") for k in list(state["model"]) + list(state["ema"]))
    weights, _ = load_weights(tmp_path / "r" / WEIGHTS_NAME)
    assert "time_embed.0.weight" in weights  # the inference weights hold everything, once


def test_a_logged_progress_bar_prints_a_line_per_tenth_and_per_minute(capsys, monkeypatch):
    """Logged to a file, a long run says where it is on every tenth of the work and at least every minute;
    a bar of a rank that does not talk prints nothing, not even its last line."""
    import pdae.progress as progress

    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    bar = progress.ProgressBar(None, None, "fit", total=1000, completed=0)
    for seconds, images in ((1, 50), (2, 60), (30, 10), (70, 10), (100, 10), (131, 10)):
        now[0] = seconds
        bar.update(images)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fit:")]
    # 110 passes the first tenth (t = 2), 130 comes a minute after it (t = 70), 150 a minute after that
    assert [line.split()[1] for line in lines] == ["110/1000", "130/1000", "150/1000"]
    silent = progress.ProgressBar(None, None, "quiet", total=10, completed=0, silent=True)
    silent.update(10)
    assert "quiet" not in capsys.readouterr().err


def test_per_step_spreads_a_batch_over_its_sampling_steps_in_whole_images():
    import pdae.progress as progress

    class Recorder:
        def __init__(self):
            self.advances = []

        def update(self, advance):
            self.advances.append(advance)

    for images, steps, expected in ((7, 3, [2, 2, 3]), (2, 4, [0, 1, 0, 1]), (100, 1, [100])):
        bar = Recorder()
        callback = progress.per_step(bar, images, steps)
        for step in range(steps):
            callback(step, None)
        assert bar.advances == expected
