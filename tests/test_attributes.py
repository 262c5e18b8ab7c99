"""Attribute directions: targets from label columns, classifiers on standardised z, edits by hand, a
save/load round trip, manipulation through the public function and `pdae attributes fit` / `manipulate`
on the shipped MNIST PDAE with held-out digits."""

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pdae.attributes import AttributeDirections, binary_targets, fit_directions, manipulate
from pdae.autoencode import StepCounts, reconstruct
from pdae.cli import app
from pdae.errors import DataError

runner = CliRunner()
torch.set_num_threads(1)


def test_targets_from_two_valued_class_and_numeric_columns():
    train = {"Smiling": np.array([-1, 1, 1, -1]), "race": np.array([0, 2, 1, 2]),
             "age": np.array([10.0, 20.0, 30.0, 40.0])}
    test = {"Smiling": np.array([1, -1]), "race": np.array([2, 0]), "age": np.array([26.0, 24.0])}
    targets_train, targets_test = binary_targets(train, test)
    assert list(targets_train) == ["Smiling", "race=0", "race=1", "race=2", "age>25"]
    assert targets_train["Smiling"].tolist() == [False, True, True, False]
    assert targets_train["race=2"].tolist() == [False, True, False, True]
    assert targets_test["age>25"].tolist() == [True, False]  # the training median decides held-out images
    with pytest.raises(DataError, match="single value"):
        binary_targets({"Bald": np.zeros(3, dtype=np.int64)}, {"Bald": np.zeros(1, dtype=np.int64)})


def separable_codes(count: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Codes of dimension 8 with a different scale per dimension; the attribute is dimension 2's sign."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(count, 8, generator=g) * torch.arange(1.0, 9.0) + 3
    return z, (z[:, 2] > 3).numpy()


def test_classifier_finds_the_attribute_and_edits_move_along_its_unit_normal():
    (z_train, y_train), (z_test, y_test) = separable_codes(400, 0), separable_codes(200, 1)
    directions = fit_directions(z_train, {"a": y_train}, z_test, {"a": y_test})
    score = directions.scores["a"]
    assert score["accuracy"] > 0.95 and score["auroc"] > 0.99 and score["test_images"] == 200
    normal = directions.weights[0] / directions.weights[0].norm()
    assert normal[2] > 0.95  # points along dimension 2, toward the positive side

    z = z_test[:5]
    edited = directions.edit(z, "a", 0.5)
    moved = directions.standardiser(edited) - directions.standardiser(z)
    torch.testing.assert_close(moved, (0.5 * math.sqrt(8) * normal).expand(5, -1))
    assert (directions.logits(edited) > directions.logits(z)).all()
    with pytest.raises(DataError, match="no attribute 'b'"):
        directions.edit(z, "b", 0.1)


def test_directions_round_trip_through_a_file(tmp_path):
    (z_train, y_train), (z_test, y_test) = separable_codes(100, 0), separable_codes(50, 1)
    directions = fit_directions(z_train, {"a": y_train, "b": ~y_train}, z_test, {"a": y_test, "b": ~y_test})
    directions.save(tmp_path / "d.safetensors", {"run": "x"})
    loaded = AttributeDirections.load(tmp_path / "d.safetensors")
    assert loaded.names == ["a", "b"] and loaded.scores == directions.scores
    torch.testing.assert_close(loaded.logits(z_test), directions.logits(z_test))


def test_scale_zero_is_the_reconstruction_and_other_scales_change_the_image(make_shifted_pdae):
    model = make_shifted_pdae(latent_dim=8)
    (z_train, y_train), (z_test, y_test) = separable_codes(100, 0), separable_codes(50, 1)
    directions = fit_directions(z_train, {"a": y_train}, z_test, {"a": y_test})
    x = torch.rand(1, 1, 8, 8) * 2 - 1
    steps = StepCounts(inversion=6, decoding=6)
    edits = manipulate(model, x[0], directions, "a", [0.0, 1.0], steps)
    # z goes through standardisation and back, which rounds; this random model amplifies that a little
    torch.testing.assert_close(edits[:1], reconstruct(model, x, steps, seeds=[0])["inferred_xT"],
                               atol=1e-3, rtol=1e-3)
    assert (edits[1] - edits[0]).abs().max() > 1e-3


def test_attributes_fit_and_manipulate_on_held_out_digits(tmp_path):
    """The commands on the shipped MNIST PDAE: digit directions scored on test digits, then an edit."""
    directions = tmp_path / "digits.safetensors"
    result = runner.invoke(app, ["attributes", "fit", "--limit", "300", "-o", str(directions), "--threads", "1"])
    assert result.exit_code == 0, result.output
    scores = json.loads(directions.with_suffix(".json").read_text())
    assert list(scores) == [f"label={digit}" for digit in range(10)]
    assert np.mean([s["auroc"] for s in scores.values()]) > 0.95

    out = tmp_path / "edit.png"
    result = runner.invoke(app, ["manipulate", "3", "--attribute", "label=7", "--scale", "0.4",
                                 "--directions", str(directions), "--inversion-steps", "30",
                                 "--decoding-steps", "30", "-o", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    edits = json.loads(out.with_suffix(".json").read_text())["edits"]
    assert [e["scale"] for e in edits] == [0.0, 0.4]
    assert edits[0]["mse_to_input"] < 0.01  # scale 0 reconstructs the input from its inferred x_T
    assert edits[1]["logit"] > edits[0]["logit"] and edits[1]["mse_to_input"] > edits[0]["mse_to_input"]

    result = runner.invoke(app, ["manipulate", "3", "--attribute", "Smiling", "--directions", str(directions)])
    assert result.exit_code != 0 and "no attribute 'Smiling'" in str(result.exception or result.output)
