"""The report of benchmarks/benchmark.py: the table of ours against diffusers' (ratios > 1 favour ours), the fast
samplers, and the training step's achieved FLOP/s as a share of the machine's measured peak."""

import os
import statistics

from machine_peak import fraction_of_peak, processor


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def table_rows(out, args, static, train, train_flops, memory, sample):
    """The table's rows (label, ours, diffusers, ratio), also recorded in out["rows"]."""
    rows, precisions = [], args.precisions

    def row(label, a, b, ratio, fmt):
        rows.append((label, fmt(a), fmt(b), f"{ratio:.2f}x"))
        out["rows"][label] = {"ours": a, "diffusers": b, "ratio": ratio}

    def ratio(a, b):
        return a / b if b else float("nan")

    row("parameters (M)", static["ours"]["params"] / 1e6, static["diffusers"]["params"] / 1e6,
        ratio(static["diffusers"]["params"], static["ours"]["params"]), lambda v: f"{v:.2f}")
    row("forward GFLOP / image", static["ours"]["fwd_flops"] / 1e9, static["diffusers"]["fwd_flops"] / 1e9,
        ratio(static["diffusers"]["fwd_flops"], static["ours"]["fwd_flops"]), lambda v: f"{v:.3f}")
    for p in precisions:
        a, b = median(train["ours", p]), median(train["diffusers", p])
        row(f"training images/s, {p} (batch {args.train_batch})", a, b, ratio(a, b), lambda v: f"{v:.1f}")
    for p in precisions:
        a, b = train_flops["ours", p] / 1e9, train_flops["diffusers", p] / 1e9
        row(f"training GFLOP / image, {p}", a, b, ratio(b, a), lambda v: f"{v:.3f}")
        a = a * median(train["ours", p])
        b = b * median(train["diffusers", p])
        row(f"training achieved GFLOP/s, {p}", a, b, ratio(a, b), lambda v: f"{v:.1f}")
    for p in precisions:
        a, b = memory["ours", p] / 2**20, memory["diffusers", p] / 2**20
        row(f"training peak activation memory (MiB), {p}", a, b, ratio(b, a), lambda v: f"{v:.0f}")
    a, b = memory["ours", precisions[0], "state"] / 2**20, memory["diffusers", precisions[0], "state"] / 2**20
    row("params + grads + AdamW state (MiB)", a, b, ratio(b, a), lambda v: f"{v:.1f}")
    for p in precisions:
        a, b = median(sample["ours", p]), median(sample["diffusers", p])
        row(f"sampling s/step, {p} (batch {args.sample_batch})", a, b, ratio(b, a), lambda v: f"{v:.4f}")
    return rows


def report(out, args, device, static, train, train_flops, memory, sample, fast):
    """Print the table, the fast samplers and the share of the machine's peak; fill `out`."""
    rows = table_rows(out, args, static, train, train_flops, memory, sample)
    widths = [max(len(r[i]) for r in rows + [("", "ours", "diffusers", "ratio")]) for i in range(4)]
    header = ("", "ours", "diffusers", "ours vs diffusers")
    widths[3] = max(widths[3], len(header[3]))
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    print()
    print("\n".join(lines))
    print(f"\nmedians of {args.repeats} alternated repetitions; training: {args.train_iters} steps per repetition; "
          f"sampling: {args.sample_steps} denoising steps per repetition. Ratios > 1 favour ours. "
          f"[{processor(device)}]")
    if fast:
        print("\nfast sampling on our pipeline (scheduler swap, batch "
              f"{args.sample_batch}, {fast[0][2]} weights):")
        for name, steps, p, seconds in fast:
            print(f"  {name:28s} {steps:4d} steps  {seconds:7.2f} s per batch  ({seconds / steps:.4f} s/step)")
        out["fast_sampling"] = [dict(scheduler=n, steps=s, precision=p, seconds=sec) for n, s, p, sec in fast]
    achieved = {(who, p): train_flops[who, p] * median(train[who, p]) for p in args.precisions for who in ("ours", "diffusers")}
    peak_lines, out["peak"] = fraction_of_peak(device, achieved, args.peak_size, args.peak_repeats)
    print("\n" + "\n".join(peak_lines))
    try:
        print("load average (1, 5, 15 min) at end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    except OSError:
        pass
    out["table"] = lines
