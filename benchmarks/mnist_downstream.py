"""The paper's downstream experiments on MNIST, measured on held-out test digits with an independent judge.

    python benchmarks/mnist_downstream.py interpolation --threads 2
    pdae attributes fit -o runs/mnist_digit_directions.safetensors
    python benchmarks/mnist_downstream.py attributes --threads 2
    python benchmarks/mnist_downstream.py fewshot --threads 2      # needs the latent DPM beside the PDAE
    pdae fit --condition class --out runs/mnist_by_class ...
    python benchmarks/mnist_downstream.py class-scale --run runs/mnist_by_class --threads 2

interpolation: mean smoothness of lerp and trajectory interpolation over pairs of test digits (2i, 2i+1).
attributes:    test digit i is edited toward class (label + 1) mod 10 along that class's direction; the
               share of edits the judge gives a higher probability of the target than the reconstruction,
               and the MSE to the input per unit of scale.
fewshot:       for K = 1, 5, 10 support images per class (the first of the train split), samples kept for
               each class; the precision is the share the judge labels as that class.
class-scale:   per scale S of G's shift, samples of each class from a class-conditional PDAE: the share the
               judge labels confidently (> 0.9), its precision, and the diversity (mean pairwise distance
               of the judge's features among samples of one class).
Each writes benchmarks/results/mnist_<experiment>.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import torch

from pdae.attributes import AttributeDirections, manipulate
from pdae.autoencode import StepCounts, decode_from_noise
from pdae.checkpoint import resolve_weights_path
from pdae.classifier import SHIPPED_MNIST_CLASSIFIER, load_classifier, predict_proba
from pdae.commands.options import SHIPPED_MNIST, SHIPPED_PDAE
from pdae.data import collate, open_dataset, to_unit_range
from pdae.fewshot import accepted_codes, first_of_each_class, support_classifier
from pdae.interpolation import MODES, interpolate, smoothness
from pdae.latent import latent_path, load_latent_dpm
from pdae.metrics import mse_per_image
from pdae.model import load_pdae
from pdae.progress import progress_bar

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def held_out_digits(model, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = open_dataset(SHIPPED_MNIST, image_size=model.dpm.image_size, channels=1, split="test", limit=count)
    return collate(dataset, range(len(dataset)))


def interpolation(args: argparse.Namespace, model, judge) -> dict:
    x, _ = held_out_digits(model, 2 * args.pairs)
    steps = StepCounts(args.steps, args.steps, refine=args.refine)
    scores: dict[str, list[float]] = {mode: [] for mode in MODES}
    with progress_bar("pairs", total=args.pairs, fields=()) as bar:
        for i in range(args.pairs):
            for mode in MODES:
                scores[mode].append(smoothness(interpolate(model, x[2 * i], x[2 * i + 1], args.frames, steps,
                                                           mode).cpu()))
            bar.update(1)
    return {"pairs": args.pairs, "frames": args.frames, "steps": args.steps,
            "straight_path": 1 / (args.frames - 1),
            "mean_smoothness": {mode: sum(v) / len(v) for mode, v in scores.items()}, "per_pair": scores}


def attributes(args: argparse.Namespace, model, judge) -> dict:
    directions = AttributeDirections.load(resolve_weights_path(args.directions))
    x, y = held_out_digits(model, args.images)
    steps = StepCounts(args.steps, args.steps, refine=args.refine)
    scales = [0.0, *args.scales]
    moved, mse_per_scale = [], []
    with progress_bar("edits", total=len(x), fields=()) as bar:
        for image, label in zip(x, y.tolist()):
            goal = (label + 1) % 10
            edits = manipulate(model, image, directions, f"label={goal}", scales, steps).cpu()
            p_goal = predict_proba(judge, edits)[:, goal]
            moved.append((p_goal[1:] > p_goal[0]).float())
            mse = mse_per_image(to_unit_range(edits[1:]), to_unit_range(image[None]).expand_as(edits[1:]))
            mse_per_scale.append(mse / torch.tensor(args.scales))
            bar.update(1)
    moved_t, mse_t = torch.stack(moved), torch.stack(mse_per_scale)
    return {"images": len(x), "steps": args.steps, "scales": args.scales,
            "share_moved_toward_target": {str(s): float(v) for s, v in zip(args.scales, moved_t.mean(0))},
            "mse_to_input_per_unit_scale": {str(s): float(v) for s, v in zip(args.scales, mse_t.mean(0))}}


def fewshot(args: argparse.Namespace, model, judge) -> dict:
    latent = load_latent_dpm(args.latent or latent_path(args.run))
    train = open_dataset(SHIPPED_MNIST, image_size=model.dpm.image_size, channels=1, split="train")
    results = {}
    for shots in (1, 5, 10):
        x, y = collate(train, first_of_each_class(train, shots))
        with torch.no_grad():
            classifier = support_classifier(latent, model.encode(x), y)
        correct, kept_share = 0, []
        for label in range(10):
            codes, accepted, draws = accepted_codes(latent, classifier, label, args.per_class,
                                                    itertools.count(10**6 * label), args.steps)
            images = decode_from_noise(model, codes, range(len(codes)), StepCounts(decoding=args.steps))
            correct += int((predict_proba(judge, images).argmax(1) == label).sum())
            kept_share.append(accepted / draws)
        results[str(shots)] = {"precision": correct / (10 * args.per_class),
                               "mean_share_kept": sum(kept_share) / 10}
        print(f"K = {shots}: {results[str(shots)]}")
    return {"samples_per_class": args.per_class, "steps": args.steps, "by_shots": results}


def class_scale(args: argparse.Namespace, model, judge) -> dict:
    if not model.class_conditional:
        raise SystemExit(f"{args.run} is not class-conditional: train one with pdae fit --condition class")
    results = {}
    for scale in args.scales:
        confident, correct, diversity = 0, 0, []
        for label in range(model.cfg.num_classes):
            z = model.encode(torch.full((args.per_class,), label))
            images = decode_from_noise(model, z, range(args.per_class), StepCounts(decoding=args.steps), scale)
            probabilities = predict_proba(judge, images)
            confident += int((probabilities.max(1).values > 0.9).sum())
            correct += int((probabilities.argmax(1) == label).sum())
            with torch.no_grad():
                diversity.append(float(torch.pdist(judge.embed(images)).mean()))
        total = model.cfg.num_classes * args.per_class
        results[str(scale)] = {"confident_share": confident / total, "precision": correct / total,
                               "diversity": sum(diversity) / len(diversity)}
        print(f"S = {scale}: {results[str(scale)]}")
    return {"samples_per_class": args.per_class, "steps": args.steps, "by_scale": results}


EXPERIMENTS = {"interpolation": interpolation, "attributes": attributes, "fewshot": fewshot,
               "class-scale": class_scale}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=list(EXPERIMENTS))
    parser.add_argument("--run", type=Path, default=SHIPPED_PDAE, help="PDAE run folder or .safetensors")
    parser.add_argument("--classifier", type=Path, default=SHIPPED_MNIST_CLASSIFIER,
                        help="the judge (default: the shipped MNIST classifier)")
    parser.add_argument("--directions", type=Path, default=ROOT / "runs" / "mnist_digit_directions.safetensors")
    parser.add_argument("--latent", type=Path, default=None, help="latent DPM (default: beside the run)")
    parser.add_argument("--steps", type=int, default=100, help="DDIM steps (inversion and decoding)")
    parser.add_argument("--refine", type=int, default=StepCounts().refine,
                        help="fixed-point iterations per inversion step (interpolation, attributes)")
    parser.add_argument("--pairs", type=int, default=10, help="interpolation: pairs of test digits")
    parser.add_argument("--frames", type=int, default=8, help="interpolation: frames per pair")
    parser.add_argument("--images", type=int, default=50, help="attributes: test digits edited")
    parser.add_argument("--scales", type=lambda s: [float(v) for v in s.split(",")], default=None,
                        help="attributes (default 0.1,0.2,0.3) or class-scale (default 0,0.5,...,3)")
    parser.add_argument("--per-class", type=int, default=10, help="fewshot, class-scale: samples per class")
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.scales is None:
        args.scales = [0.1, 0.2, 0.3] if args.experiment == "attributes" else [0.5 * i for i in range(7)]
    model = load_pdae(args.run)
    judge = load_classifier(resolve_weights_path(args.classifier))
    with torch.no_grad():
        result = {"run": str(args.run), **EXPERIMENTS[args.experiment](args, model, judge)}
    out = RESULTS / f"mnist_{args.experiment.replace('-', '_')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "per_pair"}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
