"""The evaluation pass: per-image reconstruction scores that survive a killed run."""

import pytest
import torch
from torch.utils.data import TensorDataset

import pdae.evaluation as evaluation
from pdae.autoencode import StepCounts
from pdae.evaluation import reconstruction_scores

torch.set_num_threads(1)
STEPS = StepCounts(3, 3)


def held_out_images(count: int = 6) -> TensorDataset:
    torch.manual_seed(1)
    return TensorDataset(torch.rand(count, 1, 8, 8) * 2 - 1, torch.zeros(count, dtype=torch.long))


def test_a_killed_pass_resumes_with_the_scores_of_an_uninterrupted_one(make_shifted_pdae, tmp_path,
                                                                       monkeypatch):
    model, images, partial = make_shifted_pdae(), held_out_images(), tmp_path / "scores.partial.npz"
    uninterrupted = reconstruction_scores(model, images, STEPS, batch_size=2, seed=5)

    real_reconstruct, calls = evaluation.reconstruct, []

    def killed_at_the_second_batch(*args, **kwargs):
        calls.append(kwargs["seeds"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_reconstruct(*args, **kwargs)

    monkeypatch.setattr(evaluation, "reconstruct", killed_at_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        reconstruction_scores(model, images, STEPS, batch_size=2, seed=5, resume_file=partial, settings="a")
    monkeypatch.setattr(evaluation, "reconstruct", real_reconstruct)

    resumed_seeds = []
    monkeypatch.setattr(evaluation, "reconstruct",
                        lambda *a, **k: resumed_seeds.append(list(k["seeds"])) or real_reconstruct(*a, **k))
    resumed = reconstruction_scores(model, images, STEPS, batch_size=2, seed=5, resume_file=partial,
                                    settings="a")
    assert resumed_seeds == [[7, 8], [9, 10]]  # the first batch was not recomputed
    assert resumed.keys() == uninterrupted.keys()
    for name in uninterrupted:
        torch.testing.assert_close(resumed[name], uninterrupted[name])


def test_saved_scores_of_other_settings_are_not_reused(make_shifted_pdae, tmp_path):
    model, images, partial = make_shifted_pdae(), held_out_images(4), tmp_path / "scores.partial.npz"
    reconstruction_scores(model, images, StepCounts(2, 2), batch_size=2, resume_file=partial, settings="2/2")
    fresh = reconstruction_scores(model, images, STEPS, batch_size=2, resume_file=partial, settings="3/3")
    torch.testing.assert_close(fresh["inferred_xT_mse"],
                               reconstruction_scores(model, images, STEPS, batch_size=2)["inferred_xT_mse"])


class CompiledLike(torch.nn.Module):
    """Stands in for torch.compile's wrapper, which has no truth value (its len() raises)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def __len__(self):
        raise TypeError("no len()")

    def forward(self, *args):
        self.calls += 1
        return self.model(*args)


def test_training_throughput_steps_through_the_net_it_is_given(make_shifted_pdae):
    model = make_shifted_pdae()
    net = CompiledLike(model)
    images_per_s = evaluation.training_throughput(model, torch.rand(2, 1, 8, 8) * 2 - 1, bf16=False, steps=2,
                                                  net=net)
    assert images_per_s > 0 and net.calls == 3  # a warm-up step, then the two timed ones
