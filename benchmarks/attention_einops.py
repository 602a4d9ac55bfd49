"""What the einops notation in annotated_pipeline/unet/attention.py costs: the attention blocks before/after.

    python benchmarks/attention_einops.py                  # the default U-Net's attention blocks (~1 min)
    python benchmarks/attention_einops.py --quick          # a tiny U-Net, one repetition (a smoke test)

"before" is the attention module as it was before the einops reshapes, read from git (`--before`, default
db902af, the last commit with the plain .view / .transpose code); "after" is the installed one. Both run on
the same modules with the same weights: the "before" processors are installed in place of the defaults
(diffusers' processor protocol), so only the reshape code differs. tests/test_attention_einops.py checks
that the outputs are bit-identical; this times them.

Timed, each the fastest of `--repeats` repetitions in which before and after alternate (A B, then B A, ...;
the fastest is the one least disturbed by other load on a shared machine):
    every attention block of the default AnnotatedUNet2DModel(), on the input shape it sees in the U-Net,
        forward at the sampling batch (no grad) and forward + backward at the training batch,
    the whole U-Net: forward at the sampling batch, forward + backward at the training batch.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

from annotated_pipeline.unet import AnnotatedUNet2DModel
from annotated_pipeline.unet.attention import Attention, LinearAttention

ROOT = Path(__file__).resolve().parents[1]
MODULE = "annotated_pipeline/unet/attention.py"


def processors_from_git(rev):
    """The default processors of attention.py at git revision `rev`: {LinearAttention: ..., Attention: ...}."""
    shown = subprocess.run(["git", "show", f"{rev}:{MODULE}"], cwd=ROOT, capture_output=True, text=True)
    if shown.returncode != 0:
        raise ValueError(f"cannot read {MODULE} at git revision {rev!r} (this benchmark needs a clone): "
                         f"{shown.stderr.strip()}")
    module = types.ModuleType(f"attention_at_{rev}")
    exec(compile(shown.stdout, f"{rev}:{MODULE}", "exec"), module.__dict__)
    return {LinearAttention: module.LinearAttnProcessor(), Attention: module.SoftmaxAttnProcessor()}


def install(model, processors):
    """Give every attention module of `model` the processor for its class."""
    for module in model.modules():
        if type(module) in processors:
            module.set_processor(processors[type(module)])


def attention_inputs(model, x, t):
    """{module name: (module, input shape)} of every attention block, recorded in one forward."""
    seen, hooks = {}, []

    def record(name):
        def hook(module, args, out):
            seen.setdefault(name, (module, tuple(args[0].shape)))  # returns None: the output is left alone
        return hook

    for name, module in model.named_modules():
        if isinstance(module, (LinearAttention, Attention)):
            hooks.append(module.register_forward_hook(record(name)))
    with torch.no_grad():
        model(x, t)
    for hook in hooks:
        hook.remove()
    return seen


def seconds_per_call(fn, iters):
    fn()  # warm-up (einops builds and caches its recipe on the first call of a shape)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


def forward_fn(module, shape, grad, call=None):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    call = call or module
    if not grad:
        def run():
            with torch.no_grad():
                call(x)
    else:
        def run():
            call(x).square().mean().backward()
    return run


def ab(label, fn_for, variants, repeats, iters):
    """Alternate the variants' timings `repeats` times; return (label, {variant: fastest seconds per call})."""
    times = {name: [] for name in variants}
    for r in range(repeats):
        order = list(variants) if r % 2 == 0 else list(variants)[::-1]
        for name in order:
            variants[name]()  # install this variant
            times[name].append(seconds_per_call(fn_for(), iters))
    return label, {name: min(ts) for name, ts in times.items()}


def run(args):
    torch.manual_seed(0)
    if args.quick:
        model = AnnotatedUNet2DModel(sample_size=8, dim=8, dim_mults=(1, 2), attention_heads=1, attention_head_dim=8,
                                     linear_attention_levels="all")
    else:
        model = AnnotatedUNet2DModel()
    size = model.config.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    after = {type(m): m.get_processor() for m in model.modules() if isinstance(m, (LinearAttention, Attention))}
    before = processors_from_git(args.before)
    variants = {"before": lambda: install(model, before), "after": lambda: install(model, after)}

    x = torch.randn(1, model.config.in_channels, *size)
    blocks = attention_inputs(model, x, torch.tensor([500]))
    rows = []
    for name, (module, shape) in blocks.items():
        kind = type(module).__name__
        for grad, batch in ((False, args.sample_batch), (True, args.train_batch)):
            what = "forward + backward" if grad else "forward"
            label = f"{name} ({kind}, {'x'.join(map(str, shape[1:]))}), {what}, batch {batch}"
            rows.append(ab(label, lambda: forward_fn(module, (batch, *shape[1:]), grad), variants,
                           args.repeats, args.iters))
    t_sample, t_train = torch.full((args.sample_batch,), 500), torch.full((args.train_batch,), 500)
    rows.append(ab(f"whole U-Net, forward, batch {args.sample_batch}",
                   lambda: forward_fn(model, (args.sample_batch, model.config.in_channels, *size), False,
                                      lambda y: model(y, t_sample).sample),
                   variants, args.repeats, max(1, args.iters // 4)))
    rows.append(ab(f"whole U-Net, forward + backward, batch {args.train_batch}",
                   lambda: forward_fn(model, (args.train_batch, model.config.in_channels, *size), True,
                                      lambda y: model(y, t_train).sample),
                   variants, args.repeats, max(1, args.iters // 8)))
    install(model, after)

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; before = {MODULE} at {args.before}, "
          f"after = the installed einops code; fastest of {args.repeats} alternated repetitions")
    print("| block | before (ms) | after (ms) | after / before |")
    print("|---|---:|---:|---:|")
    for label, t in rows:
        print(f"| {label} | {t['before'] * 1e3:.3f} | {t['after'] * 1e3:.3f} | {t['after'] / t['before']:.3f} |")
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny U-Net, one repetition, few calls (a smoke test)")
    parser.add_argument("--before", default="db902af", help="git revision of the 'before' attention.py")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=7, help="alternated repetitions (the fastest is reported)")
    parser.add_argument("--iters", type=int, default=40, help="calls per timing of one block")
    parser.add_argument("--sample_batch", type=int, default=16)
    parser.add_argument("--train_batch", type=int, default=64)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.iters, args.sample_batch, args.train_batch = 1, 2, 2, 2
    for name in ("threads", "repeats", "iters", "sample_batch", "train_batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be >= 1, got {value}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        run(args)
    except ValueError as error:
        print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
