"""What the U-Net attends to: record the attention weights while sampling, and draw them over the samples.

Each attention layer of the U-Net (unet/attention.py) mixes the N = H * W pixels of a feature map with an
N x N matrix of weights A, one per head (row n: how much query pixel n takes from every key pixel m):

    bottleneck (softmax attention, Vaswani et al. 2017, eq. (1)):   A = softmax(Q K^T / sqrt(d))
    other levels (linear attention, Shen et al. 2018, eq. (4)):      A = rho_q(Q)^T rho_k(K)

Linear attention never builds A, but applies it exactly (out = V A^T / sqrt(d); its rows sum to 1, see
`LinearAttention.attention_weights`), so both kinds are shown as what they are, an attention matrix.

Recording follows diffusers' processor convention: `record_attention(unet)` installs, through
`unet.set_attn_processor`, a processor around each layer's own one that returns exactly its output (the samples
do not change by a bit) and, at the chosen timesteps, stores `attn.attention_weights(x)` computed on the side.
A forward pre-hook on the U-Net tells the store which timestep the call is for. Under classifier-free guidance
the U-Net sees the doubled batch [x_t with y; x_t with no class]; the store keeps it, and the figure shows the
first (conditional) half.

    with record_attention(pipe.unet, timesteps={999, 500}) as store:
        images = pipe(batch_size=4, ...).images
    store.records  # AttentionRecord(module, step, timestep, weights (B, heads, N, N), height, width) per call

`attention_figure(pipe, ...)` samples, records one layer at a few steps and draws, for each sample and step,
that layer's weights for one query pixel, upsampled over the final sample.
"""

import argparse
import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import ImageDraw

from ..utils.options import SCALE_RANGE, number_in, span

from .images import labelled_grid, overlay, to_pil
from ..pipelines.samplers import check_sampling_options
from .options import add_figure_options, generator, load_for_figures, sampling_kwargs

BOTTLENECK = "mid_attention.fn"  # the softmax attention layer of AnnotatedUNet2DModel
HEAD_CHOICES = ("mean",)  # or a head index


@dataclass
class AttentionRecord:
    """One layer's weights at one U-Net call: weights[b, head, n, m], query n, key m, over an H x W map."""

    module: str
    step: int
    timestep: int
    weights: torch.Tensor
    height: int
    width: int

    @property
    def mean_over_heads(self):
        """(B, N, N): the heads' average, still a row-stochastic matrix."""
        return self.weights.mean(dim=1)


@dataclass
class AttentionStore:
    """The records of a `record_attention` block; `timesteps` None records every call."""

    timesteps: set | None = None
    records: list = field(default_factory=list)
    _step: int = -1
    _timestep: int | None = None

    def _see_call(self, module, args, kwargs):  # forward pre-hook of the U-Net: (sample, timestep, ...)
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        t = torch.as_tensor(t).reshape(-1)[0]
        self._step += 1
        self._timestep = int(t)

    @property
    def recording(self):
        return self.timesteps is None or self._timestep in self.timesteps

    def get(self, module, timestep=None, step=None):
        """The record of `module` at a training `timestep` (its last call then) or at a chain `step` (0-based;
        the way to tell steps apart when a chain repeats a timestep, as DPM-Solver++'s log-SNR chain does)."""
        found = [r for r in self.records if r.module == module
                 and (timestep is None or r.timestep == timestep) and (step is None or r.step == step)]
        if not found:
            raise ValueError(f"nothing recorded for {module!r} at timestep={timestep}, step={step}; recorded: "
                             f"{sorted({(r.module, r.step, r.timestep) for r in self.records})}")
        return found[-1]


class RecordingAttnProcessor:
    """Runs the layer's own processor unchanged and, when the store is recording, keeps its weights."""

    def __init__(self, inner, module, store):
        self.inner, self.module, self.store = inner, module, store

    def __call__(self, attn, x):
        out = self.inner(attn, x)
        if self.store.recording:
            with torch.no_grad():
                weights = attn.attention_weights(x).float().cpu()
            self.store.records.append(AttentionRecord(self.module, self.store._step, self.store._timestep, weights,
                                                      x.shape[-2], x.shape[-1]))
        return out


@contextlib.contextmanager
def record_attention(unet, timesteps=None, modules=None):
    """Record the attention weights of `modules` (paths such as "mid_attention.fn"; default every attention
    layer, `unet.attn_processors`) at the training timesteps in `timesteps` (default every call). The U-Net's
    processors are put back on exit."""
    original = unet.attn_processors
    available = [name[: -len(".processor")] for name in original]
    modules = available if modules is None else list(modules)
    unknown = sorted(set(modules) - set(available))
    if unknown:
        raise ValueError(f"no attention layer {unknown}; this U-Net has {available}")
    store = AttentionStore(None if timesteps is None else {int(t) for t in timesteps})
    unet.set_attn_processor({name: RecordingAttnProcessor(processor, name[: -len(".processor")], store)
                             if name[: -len(".processor")] in modules else processor
                             for name, processor in original.items()})
    hook = unet.register_forward_pre_hook(store._see_call, with_kwargs=True)
    try:
        yield store
    finally:
        hook.remove()
        unet.set_attn_processor(dict(original))


def chain_steps(pipe, num_inference_steps, count):
    """The chain the pipeline's scheduler walks, and `count` step indices spread evenly over it (first and last
    included)."""
    pipe.scheduler.set_timesteps(num_inference_steps)
    chain = [int(t) for t in pipe.scheduler.timesteps]
    picks = np.linspace(0, len(chain) - 1, min(count, len(chain))).round().astype(int)
    return chain, list(dict.fromkeys(picks.tolist()))


def query_map(record, image, query="peak", head="mean"):
    """The (H, W) weights that one query pixel gives to every key pixel, for image `image` of the record.

    query: (row, col) on the layer's H x W grid, or "peak": the query whose strongest single weight is the
    largest (the most focused query). head: "mean" (the heads' average) or a head index.
    Returns (map, (row, col))."""
    weights = record.mean_over_heads[image] if head == "mean" else record.weights[image, int(head)]
    if query == "peak":
        n = int(weights.max(dim=1).values.argmax())
        row, col = divmod(n, record.width)
    else:
        row, col = query
        if not (0 <= row < record.height and 0 <= col < record.width):
            raise ValueError(f"query {query} is outside the {record.height} x {record.width} grid of {record.module}")
    return weights[row * record.width + col].reshape(record.height, record.width), (row, col)


def attention_figure(pipe, num_images=4, timesteps=None, num_timesteps=4, module=BOTTLENECK, query="peak",
                     head="mean", scale=4, seed=0, num_inference_steps=20, **pipe_kwargs):
    """Sample `num_images` images and draw one attention layer's weights over them: a PIL image with a row
    per sample, the sample in the first column and one column per recorded step.

    Each cell is the final sample under the weights of one query pixel (marked by a square) at that step,
    upsampled bilinearly from the layer's grid (7 x 7 at the default model's bottleneck) and scaled to their
    maximum. `timesteps` (training timesteps of the chain) default to `num_timesteps` spread over the chain;
    other keyword arguments go to the pipeline (guidance_scale, class_labels, ...). The sampled images are those
    of `pipe(batch_size=num_images, generator=seeded, ...)` exactly.
    """
    if head != "mean" and not (isinstance(head, int) and 0 <= head < pipe.unet.config.attention_heads):
        raise ValueError(f"head must be 'mean' or a head index in 0..{pipe.unet.config.attention_heads - 1}, got {head!r}")
    chain, steps = chain_steps(pipe, num_inference_steps, num_timesteps)
    if timesteps is not None:
        missing = [t for t in timesteps if t not in chain]
        if missing:
            raise ValueError(f"timesteps {missing} are not in the sampler's chain of {num_inference_steps} steps: {chain}")
        steps = [chain.index(t) for t in timesteps]  # a repeated timestep: its first step
    with record_attention(pipe.unet, timesteps={chain[i] for i in steps}, modules=[module]) as store:
        samples = pipe(batch_size=num_images, generator=generator(seed), num_inference_steps=num_inference_steps,
                       output_type="pt", max_batch_size=num_images,  # one chain: one record a step
                       **pipe_kwargs).images * 2 - 1
    size = samples.shape[-2:]
    rows = []
    for b in range(num_images):
        background = to_pil(samples[b], scale)
        row = [background]
        for i in steps:
            record = store.get(module, step=i)
            weights, (qr, qc) = query_map(record, b, query, head)
            big = F.interpolate(weights[None, None], size=(size[0] * scale, size[1] * scale), mode="bilinear",
                                align_corners=False)[0, 0]
            cell = overlay(background, (big / big.max()).numpy())
            cell_h, cell_w = size[0] * scale / record.height, size[1] * scale / record.width
            ImageDraw.Draw(cell).rectangle([qc * cell_w, qr * cell_h, (qc + 1) * cell_w - 1, (qr + 1) * cell_h - 1],
                                           outline=(0, 255, 255), width=max(1, scale // 2))
            row.append(cell)
        rows.append(row)
    return labelled_grid(rows, ["sample"] + [f"t = {chain[i]}" for i in steps])


def main(argv=None, prog="python -m annotated_pipeline.visualize.attention"):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    add_figure_options(parser, num_images=4, output="attention.png")
    parser.add_argument("--module", default=BOTTLENECK,
                        help="the attention layer, a key of unet.attn_processors without '.processor' (default: the bottleneck)")
    parser.add_argument("--timesteps", type=int, nargs="+", default=None, help="training timesteps of the chain to show")
    parser.add_argument("--num_timesteps", type=int, default=4, help="without --timesteps: this many, spread over the chain")
    parser.add_argument("--query", type=int, nargs=2, default=None, metavar=("ROW", "COL"),
                        help="the query pixel on the layer's grid (default: the most focused query of each sample)")
    parser.add_argument("--head", default="mean", help="'mean' (the heads' average) or a head index")
    parser.add_argument("--scale", type=number_in(int, *SCALE_RANGE), default=4,
                        help=f"enlarge each cell this many times ({span(SCALE_RANGE)})")
    args = parser.parse_args(argv)
    check_sampling_options(parser, args)
    if args.head not in HEAD_CHOICES and not args.head.isdigit():
        parser.error(f"--head must be one of {HEAD_CHOICES} or a head index, got {args.head!r}")
    if args.num_timesteps < 1 or args.scale < 1:
        parser.error("--num_timesteps and --scale must be >= 1")
    start = time.perf_counter()
    try:
        pipe = load_for_figures(args)
        figure = attention_figure(pipe, args.num_images, args.timesteps, args.num_timesteps, args.module,
                                  tuple(args.query) if args.query else "peak",
                                  "mean" if args.head == "mean" else int(args.head), args.scale, **sampling_kwargs(args))
    except (ValueError, OSError) as error:  # bad settings, a folder that does not load
        parser.error(str(error))
    figure.save(args.output)
    print(f"attention of {args.module} for {args.num_images} samples ({args.scheduler}, {args.num_inference_steps} steps, "
          f"seed {args.seed}) in {time.perf_counter() - start:.1f} s -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
