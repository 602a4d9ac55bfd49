"""Train the Fashion-MNIST classifier whose features define our Frechet distance.

    python -m annotated_pipeline.evaluation.train_classifier --output_dir annotated_pipeline/evaluation/weights

Plain supervised learning: minimise the cross-entropy

    L(theta) = -(1/B) sum_b log softmax(f_theta(x_b))[y_b]

over the official 60,000-image training split with AdamW and a cosine learning-rate decay, then
report top-1 accuracy on the official 10,000-image test split. Images are scaled to [-1, 1]
(x = pixels / 127.5 - 1), the range the diffusion model samples in. Random horizontal flips are the
only augmentation (a mirrored shirt is still a shirt). Everything is seeded: the same command on the
same torch build gives the same weights.

--data_root is the folder with the official IDX files (SHA-256 checked) or one with train.parquet and
test.parquet. The weights (safetensors), the config, and `training_info.json` / `README.md` with the command, the
test accuracy and the date are written to --output_dir.
"""

import argparse
import datetime
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from annotated_pipeline.evaluation.classifier import FashionMNISTClassifier

DEFAULT_DATA_ROOT = "/usr/share/datasets/fashion-mnist"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True, help="where to save config.json + weights")
    parser.add_argument(
        "--data_root", default=DEFAULT_DATA_ROOT, help="folder with the four official *-ubyte.gz files, or with train/test.parquet"
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--weight_decay", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_bf16", action="store_true", help="train in fp32 instead of bf16 autocast")
    parser.add_argument("--max_train_samples", type=int, default=None, help="use only the first N training images (smoke tests)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.learning_rate <= 0:
        parser.error("--epochs and --batch_size must be >= 1 and --learning_rate > 0")
    return args


def to_model_input(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) in {0..255} -> float (N, 1, 28, 28) in [-1, 1]."""
    return images_uint8.unsqueeze(1).float() / 127.5 - 1.0


@torch.no_grad()
def accuracy(model: FashionMNISTClassifier, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of `model` (in eval mode) on images x in [-1, 1] with labels y."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i : i + batch_size]).argmax(dim=1) == y[i : i + batch_size]).sum().item()
    return correct / len(x)


def train(args: argparse.Namespace, argv: list[str] | None = None) -> dict:
    """Train, evaluate, save; returns the info written to training_info.json (`argv` is recorded as the command)."""
    argv = sys.argv[1:] if argv is None else argv
    from annotated_pipeline.evaluation.evaluate import load_split

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    train_images, train_labels = load_split(args.data_root, "train")
    test_images, test_labels = load_split(args.data_root, "test")
    x_train, y_train = to_model_input(torch.as_tensor(train_images)), torch.as_tensor(train_labels)
    x_test, y_test = to_model_input(torch.as_tensor(test_images)), torch.as_tensor(test_labels)
    if args.max_train_samples is not None:
        x_train, y_train = x_train[: args.max_train_samples], y_train[: args.max_train_samples]

    model = FashionMNISTClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * steps_per_epoch)

    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        running = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * args.batch_size : (step + 1) * args.batch_size]
            x, y = x_train[idx], y_train[idx]
            flip = torch.rand(len(idx), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not args.no_bf16):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item()
        test_acc = accuracy(model, x_test, y_test)
        print(
            f"epoch {epoch + 1}/{args.epochs}  train loss {running / steps_per_epoch:.4f}  "
            f"test acc {test_acc:.4f}  ({time.time() - start:.0f}s)",
            flush=True,
        )

    info = {
        "command": "python -m annotated_pipeline.evaluation.train_classifier " + " ".join(map(shlex.quote, argv)),
        "test_accuracy": round(accuracy(model, x_test, y_test), 4),
        "train_accuracy": round(accuracy(model, x_train, y_train), 4),
        "num_train_images": len(x_train),
        "num_test_images": len(x_test),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "weight_decay": args.weight_decay,
        "bf16_autocast": not args.no_bf16,
        "seed": args.seed,
        "train_seconds": round(time.time() - start, 1),
        "torch_version": torch.__version__,
        "date": datetime.date.today().isoformat(),
    }
    out = Path(args.output_dir)
    model.save_pretrained(out, safe_serialization=True)
    (out / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    (out / "README.md").write_text(
        "# Fashion-MNIST classifier for the offline Frechet distance\n\n"
        "LeNet-sized CNN (`annotated_pipeline.evaluation.classifier.FashionMNISTClassifier`); its 128-d\n"
        "penultimate features are the embedding of `annotated_pipeline.evaluation.evaluate`.\n"
        "Inputs: (B, 1, 28, 28) in [-1, 1].\n\n"
        f"- trained on the official Fashion-MNIST training split ({info['num_train_images']} images), "
        f"{info['epochs']} epochs, seed {info['seed']}, torch {info['torch_version']}, {info['date']}\n"
        f"- test-split accuracy: **{info['test_accuracy']:.2%}** ({info['num_test_images']} images)\n"
        f"- command: `{info['command']}`\n"
    )
    print(json.dumps(info, indent=2))
    return info


def main(argv=None) -> None:
    train(parse_args(argv), argv)


if __name__ == "__main__":
    main()
