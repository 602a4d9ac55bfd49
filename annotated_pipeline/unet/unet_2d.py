"""The noise-prediction network eps_theta(x_t, t) of DDPM: a time-conditioned U-Net.

Ho et al. 2020 train eps_theta to recover the noise eps that made x_t = sqrt(alpha_bar_t) x_0 +
sqrt(1 - alpha_bar_t) eps (eq. (4); alpha_bar_t is `alphas_cumprod`), so the network maps an image
and a step to a tensor of the same shape:

    eps_theta: (B, C, H, W) x (B,) -> (B, C_out, H, W)          (C_out = C when it predicts eps)

The architecture is the blog's (Rogge & Rasul 2022, "The Annotated Diffusion Model"), itself a small
version of Ho et al.'s PixelCNN++-style U-Net (Ronneberger et al. 2015). With L = len(dim_mults) levels,
widths w_i = dim * dim_mults[i], S the input size and emb the time embedding (embeddings.py):

    init conv 7x7           C -> init_dim                     at S           (kept as r, the last skip)
    down level i = 0..L-1   block   w_{i-1} -> w_i            at S / 2^i     push  (w_{-1} = init_dim)
                            block   w_i -> w_i, linear attn                  push
                            downsample w_i -> w_i to S / 2^(i+1)   (last level: a 3x3 conv, no halving)
    bottleneck              block, softmax attention, block   at S / 2^(L-1), width w_{L-1}
    up level i = L-1..0     block   [x, pop] 2 w_i -> w_i
                            block   [x, pop] 2 w_i -> w_i, linear attn
                            upsample w_i -> w_{i-1} to S / 2^(i-1)  (level 0: a 3x3 conv w_0 -> w_0)
    final                   block [x, r] w_0 + init_dim -> dim, then 1x1 conv dim -> C_out

Every block sees emb; "[x, pop]" concatenates the skip pushed by the mirror block on the way down (the
seed concatenates after each block, so two skips per level). Blocks are ResNet or ConvNeXt (blocks.py);
attention is softmax in the bottleneck and linear elsewhere (attention.py): by default only on the
levels between the full resolution and the bottleneck's ("linear attn" above is skipped at i = 0 and
i = L-1), on every level as in the blog with linear_attention_levels="all" (what `Unet()` builds).
The input size must survive L - 1 halvings: H and W multiples of 2^(L-1) (28 -> 14 -> 7 for
dim_mults (1, 2, 4)).

Class conditioning (optional, `num_class_embeds`): a learned vector per class is added to emb, so
every block sees (t, y); it is what classifier-free guidance (Ho & Salimans 2022) builds on.

Everything that shapes the network is a `register_to_config` argument, so `save_pretrained` /
`from_pretrained` rebuild it from config.json alone, and the model is a drop-in `unet` for diffusers'
pipelines: forward(sample, timestep).sample. Its attention layers follow diffusers' processor convention
(`AttentionMixin`): `unet.attn_processors` is a dict keyed by module path + ".processor" (e.g.
"mid_attention.fn.processor"), and `unet.set_attn_processor(p)` (one processor, or such a dict) swaps what
they compute, e.g. for a processor that records the weights (annotated_pipeline.visualize.attention).

This file imports its siblings directly (embeddings, blocks, attention, config, fused) and nothing from the package,
so that diffusers' remote-code loader can copy it with those files into a saved pipeline.
"""

from dataclasses import dataclass

import torch
from torch import nn
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import AttentionMixin
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DOutput

from .attention import Attention, LinearAttention, LinearAttnProcessor, PreNormResidual, SoftmaxAttnProcessor
from .blocks import ConvNextBlock, Downsample
from .config import check_class_labels, check_config, check_sample
from .embeddings import TimeEmbedding
from .fused import FusedResnetBlock, FusedUpsample


@dataclass
class AnnotatedUNet2DOutput(UNet2DOutput):
    """diffusers' `UNet2DOutput` (`.sample`, `[0]`, `.to_tuple()`) that torch functions also accept as a tensor.

    Any torch function given this object sees its `.sample` (the `__torch_function__` protocol), so the
    blog's loss `F.smooth_l1_loss(noise, model(x_noisy, t))` and `betas_t * model(x, t)` work unchanged,
    while diffusers' pipelines keep reading `model(x, t).sample`.
    """

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        def unwrap(a):
            if isinstance(a, cls):
                return a.sample
            if isinstance(a, (list, tuple)):
                return type(a)(unwrap(x) for x in a)
            return a

        return func(*unwrap(tuple(args)), **{k: unwrap(v) for k, v in (kwargs or {}).items()})


class AnnotatedUNet2DModel(ModelMixin, ConfigMixin, AttentionMixin):
    """eps_theta(x_t, t[, y]): the blog's U-Net as a diffusers model.

    Args:
        sample_size: image side (int) or (height, width); None accepts any size that fits (pipelines need it).
        in_channels: channels of x_t (1 for Fashion-MNIST).
        out_channels: channels of the prediction; None means in_channels (predicting eps).
        dim: base width; the time embedding is sinusoidal of width dim, projected to 4 * dim.
        init_dim: width of the 7x7 input convolution; None means dim // 3 * 2, as in the blog.
        dim_mults: width multiplier of each level, w_i = dim * dim_mults[i]; one level per entry.
        block_type: "resnet" (Wide-ResNet, GroupNorm + SiLU, time as scale-shift) or "convnext".
        resnet_block_groups: GroupNorm groups of the ResNet blocks; must divide every block width.
        convnext_mult: expansion factor inside the ConvNeXt blocks.
        attention_heads, attention_head_dim: heads and width per head of every attention layer.
        linear_attention_levels: the levels (0 = full resolution) whose two blocks (down and up) carry a
            linear attention. "middle" (the default) means levels 1 .. L-2, neither the full resolution,
            where N = H * W is largest and linear attention costs most (Ho et al. 2020 and diffusers' DDPM
            U-Nets have no attention there either), nor the bottleneck's resolution, where the softmax
            attention already sees every position: for dim_mults (1, 2, 4), one linear attention per
            direction at 14x14. "below_full_resolution" means levels 1 .. L-1 (14x14 and 7x7, the default
            before "middle"); "all" (or None, its spelling in older configs) means every level, the blog's
            architecture, which `Unet()` builds. A sequence of level indices picks them explicitly. The
            bottleneck's softmax attention is always there. Saved configs hold the resolved tuple.
        num_class_embeds: number of classes for class conditioning; None for an unconditional model.
        null_class_embed: with num_class_embeds = K, one more learned vector, label K, for "no class"
            (y = empty set). Label dropout trains it (`train_accelerate.py --class_dropout_prob`) and
            classifier-free guidance needs it: eps_theta(x_t, t, empty) is the unconditional model
            inside the conditional one (Ho & Salimans 2022). Such a model also accepts
            class_labels=None, which means label K for every image.

    Defaults are the blog's Fashion-MNIST setting (28x28x1 images, dim_mults (1, 2, 4), ResNet blocks with
    4 groups, attention 4 heads x 32) at base width 16 instead of the blog's 28, with linear attention at
    the middle level only (see linear_attention_levels). On 2 CPU cores this trains about 2x as many
    images per minute as the previous default (dim 28, linear attention at 14x14 and 7x7) and reaches a
    better sample quality in the same minutes of training, though not in the same number of steps;
    benchmarks/RESULTS.md has the measurements. `AnnotatedUNet2DModel(dim=28, linear_attention_levels="all")`
    is the blog's network.

    Gradient checkpointing (`enable_gradient_checkpointing()`, diffusers' switch) recomputes each block's
    activations in the backward pass instead of storing them: the same gradients for less memory, at
    the cost of a second forward pass through each block.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        sample_size=28,
        in_channels=1,
        out_channels=None,
        dim=16,
        init_dim=None,
        dim_mults=(1, 2, 4),
        block_type="resnet",
        resnet_block_groups=4,
        convnext_mult=2,
        attention_heads=4,
        attention_head_dim=32,
        num_class_embeds=None,
        linear_attention_levels="middle",
        null_class_embed=False,
    ):
        super().__init__()
        self.gradient_checkpointing = False  # set by enable_gradient_checkpointing() (ModelMixin)
        # ---- fail early: every impossible configuration is refused here, with what would work ----
        init_dim, dim_mults, sample_size, linear_attention_levels, attended = check_config(
            sample_size=sample_size, in_channels=in_channels, out_channels=out_channels, dim=dim, init_dim=init_dim,
            dim_mults=dim_mults, block_type=block_type, resnet_block_groups=resnet_block_groups,
            convnext_mult=convnext_mult, attention_heads=attention_heads, attention_head_dim=attention_head_dim,
            num_class_embeds=num_class_embeds, linear_attention_levels=linear_attention_levels,
            null_class_embed=null_class_embed)
        widths = [dim * m for m in dim_mults]
        num_levels = len(dim_mults)
        # Lists and tuples both come back as lists from config.json: store one canonical form.
        self.register_to_config(dim_mults=dim_mults, sample_size=sample_size, linear_attention_levels=linear_attention_levels)

        # ---- the network ----
        time_dim = 4 * dim
        if block_type == "resnet":
            def block(c_in, c_out):
                return FusedResnetBlock(c_in, c_out, time_dim, groups=resnet_block_groups)  # blocks.ResnetBlock, computed faster
        else:
            def block(c_in, c_out):
                return ConvNextBlock(c_in, c_out, time_dim, mult=convnext_mult)

        def linear_attention(c, level):
            if level not in attended:
                return nn.Identity()
            return PreNormResidual(c, LinearAttention(c, attention_heads, attention_head_dim))

        self.time_embedding = TimeEmbedding(dim, time_dim)
        self.class_embedding = None
        if num_class_embeds is not None:  # rows 0..K-1 are the classes, row K (if any) is "no class"
            self.class_embedding = nn.Embedding(num_class_embeds + int(null_class_embed), time_dim)
        self.init_conv = nn.Conv2d(in_channels, init_dim, kernel_size=7, padding=3)

        self.down_levels = nn.ModuleList()  # level i: block w_{i-1} -> w_i, block w_i -> w_i, linear attn, downsample
        for i, (c_prev, w) in enumerate(zip([init_dim] + widths[:-1], widths)):
            last = i == num_levels - 1
            self.down_levels.append(nn.ModuleDict({
                "block1": block(c_prev, w),
                "block2": block(w, w),
                "attention": linear_attention(w, i),
                "downsample": nn.Conv2d(w, w, kernel_size=3, padding=1) if last else Downsample(w, w),
            }))

        mid = widths[-1]  # the bottleneck: block, softmax attention, block
        self.mid_block1 = block(mid, mid)
        self.mid_attention = PreNormResidual(mid, Attention(mid, attention_heads, attention_head_dim))
        self.mid_block2 = block(mid, mid)

        self.up_levels = nn.ModuleList()  # level i = L-1..0: block [x, pop] 2 w_i -> w_i twice, linear attn, upsample
        for i in reversed(range(num_levels)):
            w = widths[i]
            self.up_levels.append(nn.ModuleDict({
                "block1": block(2 * w, w),
                "block2": block(2 * w, w),
                "attention": linear_attention(w, i),
                "upsample": nn.Conv2d(w, w, kernel_size=3, padding=1) if i == 0 else FusedUpsample(w, widths[i - 1]),
            }))

        self.final_block = block(widths[0] + init_dim, dim)
        self.final_conv = nn.Conv2d(dim, out_channels if out_channels is not None else in_channels, kernel_size=1)

    def set_default_attn_processor(self):
        """Give every attention layer its default processor back (the math of attention.py)."""
        self.set_attn_processor({
            name: SoftmaxAttnProcessor() if isinstance(self.get_submodule(name.rsplit(".", 1)[0]), Attention)
            else LinearAttnProcessor()
            for name in self.attn_processors
        })

    def _per_example(self, name, value, batch, device):
        """An int/float, a 0-d tensor or a (B,) / (1,) tensor -> a (B,) tensor on `device` (no host sync)."""
        if not torch.is_tensor(value):
            value = torch.tensor([value], device=device)
        elif value.ndim == 0:
            value = value[None]
        if value.ndim != 1 or value.shape[0] not in (1, batch):
            raise ValueError(
                f"{name} must be a number, a 0-d tensor or a tensor of shape ({batch},) for a batch of {batch}, "
                f"got shape {tuple(value.shape)}"
            )
        return value.to(device).expand(batch)

    def _run_block(self, block, *inputs):
        """block(*inputs), through the checkpointing function while training with gradient checkpointing on."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return self._gradient_checkpointing_func(block, *inputs)
        return block(*inputs)

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        """eps_theta(x_t, t[, y]).

        Args:
            sample: x_t, (B, in_channels, H, W) with H and W multiples of 2**(len(dim_mults) - 1).
            timestep: t, an int/float, a 0-d tensor or a (B,) tensor (broadcast to the batch).
            class_labels: y, (B,) class indices (or one int / 0-d tensor for the whole batch) in
                0..K-1, or K ("no class") when the model has a null_class_embed; required exactly when
                the model was built with num_class_embeds, except that None means K for a model with a
                null_class_embed.
            return_dict: return an `AnnotatedUNet2DOutput` (`.sample`) if True, else the tuple (sample,).
        """
        check_sample(self.config, sample)  # config.py: shape and side lengths
        batch = sample.shape[0]
        t = self._per_example("timestep", timestep, batch, sample.device)
        emb = self.time_embedding(t)  # MLP(sinusoidal(t)), embeddings.py
        if self.class_embedding is not None or class_labels is not None:
            if class_labels is not None:
                class_labels = self._per_example("class_labels", class_labels, batch, sample.device)
            y = check_class_labels(self.config, class_labels)  # None -> the "no class" row, where there is one
            emb = emb + self.class_embedding(self._per_example("class_labels", y, batch, sample.device).long())

        run = self._run_block
        x = self.init_conv(sample)
        r = x
        skips = []
        for level in self.down_levels:
            x = run(level["block1"], x, emb)
            skips.append(x)
            x = run(level["attention"], run(level["block2"], x, emb))
            skips.append(x)
            x = level["downsample"](x)

        x = run(self.mid_block1, x, emb)
        x = run(self.mid_attention, x)
        x = run(self.mid_block2, x, emb)

        for level in self.up_levels:
            x = run(level["block1"], torch.cat([x, skips.pop()], dim=1), emb)
            x = run(level["block2"], torch.cat([x, skips.pop()], dim=1), emb)
            x = level["upsample"](run(level["attention"], x))

        x = run(self.final_block, torch.cat([x, r], dim=1), emb)
        out = self.final_conv(x)
        if not return_dict:
            return (out,)
        return AnnotatedUNet2DOutput(sample=out)


_UNET_EXTRA_KWARGS = ("attention_heads", "attention_head_dim", "num_class_embeds", "null_class_embed")


def Unet(
    dim,
    init_dim=None,
    out_dim=None,
    dim_mults=(1, 2, 4, 8),
    channels=3,
    resnet_block_groups=4,
    use_convnext=False,
    convnext_mult=2,
    sample_size=None,
    linear_attention_levels="all",
    **kwargs,
):
    """The blog's constructor, `Unet(dim=28, channels=1, dim_mults=(1, 2, 4))`, building an AnnotatedUNet2DModel.

    Argument names are the blog's (channels, out_dim, use_convnext); they map to the model's config
    (in_channels, out_channels, block_type). sample_size=None leaves the size open (any multiple of
    2**(len(dim_mults) - 1)); pass it to use the model in a diffusers pipeline. Like the blog it puts a
    linear attention on every level (linear_attention_levels="all"; AnnotatedUNet2DModel's default skips
    the full-resolution level). Extra keyword arguments: attention_heads, attention_head_dim,
    num_class_embeds, null_class_embed; the blog's self_condition=False and with_time_emb=True are accepted (their only
    supported values).
    """
    if kwargs.pop("self_condition", False):
        raise ValueError("self_condition=True is not supported (the model sees x_t, t and optionally a class only)")
    if not kwargs.pop("with_time_emb", True):
        raise ValueError("with_time_emb=False is not supported: a DDPM network must be told the step t")
    unknown = sorted(set(kwargs) - set(_UNET_EXTRA_KWARGS))
    if unknown:
        raise ValueError(
            f"Unet() got unknown arguments {unknown}; besides the blog's it accepts {list(_UNET_EXTRA_KWARGS)}"
        )
    return AnnotatedUNet2DModel(
        sample_size=sample_size,
        in_channels=channels,
        out_channels=out_dim,
        dim=dim,
        init_dim=init_dim,
        dim_mults=dim_mults,
        block_type="convnext" if use_convnext else "resnet",
        resnet_block_groups=resnet_block_groups,
        convnext_mult=convnext_mult,
        linear_attention_levels=linear_attention_levels,
        **kwargs,
    )
