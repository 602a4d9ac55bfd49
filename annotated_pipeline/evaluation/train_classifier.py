"""Train the classifier whose features define our Frechet distance and KID, on any labelled image set.

    annotated-pipeline train-classifier DATA --output_dir FOLDER [--image_column image --label_column label]
    python -m annotated_pipeline.evaluation.train_classifier --output_dir annotated_pipeline/evaluation/weights

DATA is an image folder with one sub-folder per class (train/ and test/ folders inside it are the
splits), a folder of parquet files or a Hub data set (with --image_column/--label_column), or the
Fashion-MNIST IDX folder (the default, /usr/share/datasets/fashion-mnist: the shipped weights'
command, with `--pooling flatten`, the head they were trained with). Plain supervised learning: minimise the cross-entropy

    L(theta) = -(1/B) sum_b log softmax(f_theta(x_b))[y_b]

with AdamW and a cosine learning-rate decay, then report top-1 accuracy on held-out images: DATA's
test split where it has one, else a seeded `--holdout_fraction` of its training split (the report
says which). Images are scaled to [-1, 1] (x = 2 p / 255 - 1), the range the diffusion model samples
in, at --resolution (default: the first image's shorter side). Random horizontal flips are the only
augmentation (a mirrored shirt is still a shirt; --no_random_flip for digits or text). Everything is
seeded: the same command on the same torch build gives the same weights.

The weights (safetensors), config.json (image size, channels, class count and class names) and
`training_info.json` / `README.md` with the command, the held-out accuracy and the date are
written to --output_dir.
"""

import argparse
import datetime
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from annotated_pipeline.utils.errors import run_reporting
from annotated_pipeline.utils.hardware import PRECISION_HELP, PRECISIONS, autocast, describe_processor, resolve_precision
from annotated_pipeline.utils.outputs import output_folder
from annotated_pipeline.evaluation.classifier import POOLINGS, ImageClassifier
from annotated_pipeline.datasets import labelled

DEFAULT_DATA_ROOT = "/usr/share/datasets/fashion-mnist"


def parse_channels(text):
    """'32,64' -> (32, 64): the widths of the two conv stages."""
    try:
        channels = tuple(int(part) for part in text.split(","))
    except ValueError:
        channels = ()
    if len(channels) != 2 or min(channels) < 1:
        raise argparse.ArgumentTypeError(f"expected two positive ints such as 32,64; got {text!r}")
    return channels


def build_parser(prog="python -m annotated_pipeline.evaluation.train_classifier") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", default=None,
                        help=f"an image folder (class sub-folders), a parquet folder, a Hub data set, or the "
                             f"Fashion-MNIST IDX folder (default: {DEFAULT_DATA_ROOT})")
    parser.add_argument("--data_root", default=None, help="the same as DATA (its older spelling)")
    parser.add_argument("--output_dir", type=output_folder, required=True, help="where to save config.json + weights")
    parser.add_argument("--image_column", default="image")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--resolution", type=int, default=None, help="image side (default: the first image's shorter side)")
    parser.add_argument("--holdout_fraction", type=float, default=0.1,
                        help="share of the training split held out (seeded) when DATA has no test split")
    parser.add_argument("--pooling", choices=POOLINGS, default="max",
                        help="max: each feature channel's maximum over the image (objects anywhere); flatten: every "
                             "position (the shipped Fashion-MNIST weights: `--pooling flatten`)")
    parser.add_argument("--channels", type=parse_channels, default=(32, 64), help="widths of the two conv stages")
    parser.add_argument("--kernel_size", type=int, default=5, help="odd side of the conv kernels")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--weight_decay", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_random_flip", action="store_true", help="no horizontal flips (digits, text)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    parser.add_argument("--no_bf16", action="store_const", const="fp32", dest="precision",
                        help="the same as --precision fp32 (its older spelling)")
    parser.add_argument("--max_train_samples", type=int, default=None, help="use only the first N training images (smoke tests)")
    return parser


def parse_args(argv=None, prog="python -m annotated_pipeline.evaluation.train_classifier") -> argparse.Namespace:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.learning_rate <= 0:
        parser.error("--epochs and --batch_size must be >= 1 and --learning_rate > 0")
    if args.data is not None and args.data_root is not None and args.data != args.data_root:
        parser.error(f"DATA ({args.data}) and --data_root ({args.data_root}) name two data sets: give one")
    if args.resolution is not None and args.resolution < 4:
        parser.error(f"--resolution must be >= 4, got {args.resolution}")
    if not 0.0 < args.holdout_fraction < 1.0:
        parser.error(f"--holdout_fraction must lie in (0, 1), got {args.holdout_fraction}")
    args.data = args.data or args.data_root or DEFAULT_DATA_ROOT
    return args


def load_labelled_data(args) -> dict:
    """Training and held-out tensors, class names and a description of the held-out images."""
    train_set = labelled.open_split(args.data, "train")
    if train_set is None:
        raise ValueError(f"{args.data} has no training split")
    channels, size = labelled.image_shape_of(train_set, args.image_column)
    size = args.resolution or size
    if args.label_column not in train_set.column_names:
        from annotated_pipeline.datasets.loading import one_class_message

        if one_class_message(os.fspath(args.data), args.label_column):
            raise ValueError(one_class_message(os.fspath(args.data), args.label_column) + "; a classifier needs them")
        raise ValueError(f"--label_column {args.label_column!r} is not a column of {args.data}; "
                         f"available columns: {train_set.column_names}")
    from annotated_pipeline.datasets.labelled import count_classes

    num_classes = count_classes(train_set, args.label_column)
    names = labelled.class_names_of(train_set, args.label_column)
    x_train, y_train = labelled.to_tensors(train_set, size, channels, args.image_column, args.label_column)
    test_set = labelled.open_split(args.data, "test")
    if test_set is not None:
        x_test, y_test = labelled.to_tensors(test_set, size, channels, args.image_column, args.label_column)
        held_out = f"the test split of {args.data} ({len(x_test)} images)"
    else:
        kept, held = labelled.holdout_indices(len(x_train), args.holdout_fraction, args.seed)
        x_test, y_test = x_train[held], y_train[held]
        x_train, y_train = x_train[kept], y_train[kept]
        held_out = (f"a seeded {args.holdout_fraction:g} of the training split ({len(x_test)} images, seed "
                    f"{args.seed}; {args.data} has no test split)")
    if y_test.numel() and not 0 <= int(y_test.min()) <= int(y_test.max()) < num_classes:
        raise ValueError(f"the held-out labels lie in {int(y_test.min())}..{int(y_test.max())}, "
                         f"outside the training split's 0..{num_classes - 1}")
    return dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, num_classes=num_classes,
                class_names=names, channels=channels, image_size=size, held_out=held_out)


@torch.no_grad()
def accuracy(model: ImageClassifier, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of `model` (in eval mode) on images x in [-1, 1] with labels y."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i : i + batch_size]).argmax(dim=1) == y[i : i + batch_size]).sum().item()
    return correct / len(x)


def train(args: argparse.Namespace, argv: list[str] | None = None,
          prog: str = "python -m annotated_pipeline.evaluation.train_classifier") -> dict:
    """Train, evaluate, save; returns the info written to training_info.json (`argv` is recorded as the command)."""
    argv = sys.argv[1:] if argv is None else argv
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    precision = resolve_precision(args.precision, "cpu")  # bf16 autocast only where the CPU has bf16 instructions

    data = load_labelled_data(args)
    x_train, y_train, x_test, y_test = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    if args.max_train_samples is not None:
        x_train, y_train = x_train[: args.max_train_samples], y_train[: args.max_train_samples]

    model = ImageClassifier(in_channels=data["channels"], image_size=data["image_size"], channels=args.channels,
                            kernel_size=args.kernel_size,
                            num_classes=data["num_classes"], class_names=data["class_names"], pooling=args.pooling)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * steps_per_epoch)

    print(f"precision {precision} on {describe_processor('cpu')}", flush=True)
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        running = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * args.batch_size : (step + 1) * args.batch_size]
            x, y = x_train[idx], y_train[idx]
            if not args.no_random_flip:
                flip = torch.rand(len(idx), generator=generator) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            with autocast(precision, "cpu"):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item()
        if not math.isfinite(running) or not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise FloatingPointError(  # run_reporting: one line, exit status 1; nothing is saved
                f"training diverged in epoch {epoch + 1}: the loss or the weights are NaN or inf, so nothing was "
                f"saved; lower --learning_rate (now {args.learning_rate:g})")
        test_acc = accuracy(model, x_test, y_test)
        print(
            f"epoch {epoch + 1}/{args.epochs}  train loss {running / steps_per_epoch:.4f}  "
            f"held-out acc {test_acc:.4f}  ({time.time() - start:.0f}s)",
            flush=True,
        )

    info = {
        "command": f"{prog} " + " ".join(map(shlex.quote, argv)),
        "data": str(args.data),
        "held_out": data["held_out"],
        "test_accuracy": round(accuracy(model, x_test, y_test), 4),
        "train_accuracy": round(accuracy(model, x_train, y_train), 4),
        "num_train_images": len(x_train),
        "num_test_images": len(x_test),
        "image_shape": [data["channels"], data["image_size"], data["image_size"]],
        "class_names": list(model.class_names),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "weight_decay": args.weight_decay,
        "bf16_autocast": precision == "bf16",
        "seed": args.seed,
        "train_seconds": round(time.time() - start, 1),
        "torch_version": torch.__version__,
        "date": datetime.date.today().isoformat(),
    }
    _save(model, info, data, args)
    print(json.dumps(info, indent=2))
    return info


def _save(model, info, data, args):
    """The classifier folder: weights (safetensors), training_info.json and a README that says what it is."""
    out = Path(args.output_dir)
    model.save_pretrained(out, safe_serialization=True)
    (out / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    c, size = data["channels"], data["image_size"]
    (out / "README.md").write_text(
        "# Image classifier for the offline Frechet distance and KID\n\n"
        "LeNet-sized CNN (`annotated_pipeline.evaluation.classifier.ImageClassifier`); its "
        f"{model.config.feature_dim}-d\npenultimate features are the embedding of `annotated-pipeline evaluate --classifier`.\n"
        f"Inputs: (B, {c}, {size}, {size}) in [-1, 1]. Classes: {', '.join(model.class_names)}.\n\n"
        f"- trained on {args.data} ({info['num_train_images']} images), "
        f"{info['epochs']} epochs, seed {info['seed']}, torch {info['torch_version']}, {info['date']}\n"
        f"- held-out accuracy: **{info['test_accuracy']:.2%}** on {data['held_out']}\n"
        f"- command: `{info['command']}`\n"
    )


def main(argv=None, prog="python -m annotated_pipeline.evaluation.train_classifier") -> int:
    args = parse_args(argv, prog)
    return run_reporting(prog, lambda: train(args, sys.argv[1:] if argv is None else list(argv), prog))


if __name__ == "__main__":
    sys.exit(main())
