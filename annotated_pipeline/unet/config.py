"""The U-Net's configuration, checked: every impossible combination is refused before a layer is built.

`check_config` takes the arguments of `AnnotatedUNet2DModel.__init__` and returns the values the network
is built from and stored with (one canonical form, since lists and tuples both come back as lists from
config.json), or raises a ValueError that says what was wrong and what would work:

    dim                    even (the sinusoidal time embedding pairs a sine and a cosine)
    resnet_block_groups    divides every ResNet block width (GroupNorm)
    sample_size            survives len(dim_mults) - 1 halvings: a multiple of 2^(L-1)
    linear_attention_levels  "middle", "below_full_resolution", "all"/None, or distinct level indices
    bounds                 widest layer, levels, sample_size and classes below MAX_* (no terabyte configs)
"""

from math import gcd

import torch

BLOCK_TYPES = ("resnet", "convnext")
LINEAR_ATTENTION_NAMES = ("middle", "below_full_resolution", "all")  # or level indices such as (1, 2)


def named_levels(name, num_levels):
    """The level indices a named linear_attention_levels stands for in a U-Net of num_levels levels."""
    last = num_levels - 1  # the bottleneck's resolution
    return tuple(range(1, last)) if name == "middle" else tuple(range(1, last + 1))


# Bounds far above any model this project trains, so that a config that asks for terabytes (dim: 10**6)
# is refused as a config, not found by an allocation.
MAX_WIDTH = 8192          # dim * max(dim_mults), the widest layer
MAX_SIDE = 4096           # pixels per side of sample_size
MAX_CLASSES = 100_000     # num_class_embeds
MAX_LEVELS = 10           # len(dim_mults)


def _check_int(name, value, minimum=1, allow_none=False, maximum=None):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        allowed = f"an integer >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value!r}")


def _halvings(size, n):
    """'30 -> 15 -> 7.5' : what n halvings do to a side of `size` pixels."""
    sizes = [size / 2**k for k in range(n + 1)]
    return " -> ".join(f"{s:g}" for s in sizes)


def check_spatial(what, height, width, num_levels):
    factor = 2 ** (num_levels - 1)
    for side in (height, width):
        if side % factor != 0:
            raise ValueError(
                f"{what} {side} cannot be halved {num_levels - 1} times by the {num_levels}-level U-Net "
                f"({_halvings(side, num_levels - 1)}); sizes that work are multiples of 2**{num_levels - 1} = "
                f"{factor} (e.g. {max(factor, side // factor * factor)} or {(side // factor + 1) * factor}), "
                f"or use fewer dim_mults"
            )


def _attended_levels(linear_attention_levels, num_levels, dim_mults):
    """(linear_attention_levels as stored, the set of levels with linear attention), or a ValueError."""
    if linear_attention_levels is None or linear_attention_levels == "all":
        linear_attention_levels = None  # every level; stored as None, its spelling in older configs
        attended = set(range(num_levels))
    elif linear_attention_levels in LINEAR_ATTENTION_NAMES:
        linear_attention_levels = named_levels(linear_attention_levels, num_levels)
        attended = set(linear_attention_levels)
    else:
        if isinstance(linear_attention_levels, (str, bytes)) or not hasattr(linear_attention_levels, "__iter__"):
            raise ValueError(
                f"linear_attention_levels must be \"middle\" (the levels strictly between 0 and {num_levels - 1}), "
                f"\"below_full_resolution\" (levels 1..{num_levels - 1}), \"all\" or None (every level), "
                f"or a sequence of level indices in 0..{num_levels - 1}, "
                f"got {linear_attention_levels!r}"
            )
        linear_attention_levels = tuple(linear_attention_levels)
        bad = [i for i in linear_attention_levels
               if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_levels]
        if bad or len(set(linear_attention_levels)) != len(linear_attention_levels):
            raise ValueError(
                f"linear_attention_levels must hold distinct level indices in 0..{num_levels - 1} (one per entry "
                f"of dim_mults={dim_mults}), got {linear_attention_levels!r}"
            )
        attended = set(linear_attention_levels)
        linear_attention_levels = tuple(sorted(attended))
    return linear_attention_levels, attended


def check_config(sample_size, in_channels, out_channels, dim, init_dim, dim_mults, block_type, resnet_block_groups,
                 convnext_mult, attention_heads, attention_head_dim, num_class_embeds, linear_attention_levels,
                 null_class_embed):
    """(init_dim, dim_mults, sample_size, linear_attention_levels, attended levels) in canonical form;
    ValueError for a configuration no network can have."""
    _check_int("in_channels", in_channels)
    _check_int("out_channels", out_channels, allow_none=True)
    _check_int("dim", dim, minimum=2)
    if dim % 2 != 0:
        raise ValueError(f"dim must be even (the sinusoidal time embedding pairs a sine and a cosine), got {dim}")
    if init_dim is None:
        init_dim = dim // 3 * 2
    _check_int("init_dim", init_dim)
    if isinstance(dim_mults, (str, bytes)) or not hasattr(dim_mults, "__len__") or len(dim_mults) == 0:
        raise ValueError(f"dim_mults must be a non-empty sequence of positive integers, got {dim_mults!r}")
    for m in dim_mults:
        _check_int("every entry of dim_mults", m)
    dim_mults = tuple(dim_mults)
    if len(dim_mults) > MAX_LEVELS or dim * max(dim_mults) > MAX_WIDTH:
        raise ValueError(f"dim * max(dim_mults) = {dim * max(dim_mults)} with {len(dim_mults)} levels exceeds this "
                         f"U-Net's bounds (widest layer <= {MAX_WIDTH}, at most {MAX_LEVELS} levels)")
    if block_type not in BLOCK_TYPES:
        raise ValueError(f"block_type must be one of {BLOCK_TYPES}, got {block_type!r}")
    _check_int("resnet_block_groups", resnet_block_groups)
    _check_int("convnext_mult", convnext_mult)
    _check_int("attention_heads", attention_heads)
    _check_int("attention_head_dim", attention_head_dim)
    _check_int("num_class_embeds", num_class_embeds, allow_none=True, maximum=MAX_CLASSES)
    if not isinstance(null_class_embed, bool):
        raise ValueError(f"null_class_embed must be True or False, got {null_class_embed!r}")
    if null_class_embed and num_class_embeds is None:
        raise ValueError("null_class_embed=True needs num_class_embeds (the classes it stands beside); "
                         "an unconditional model has no class to drop")

    num_levels = len(dim_mults)
    linear_attention_levels, attended = _attended_levels(linear_attention_levels, num_levels, dim_mults)
    widths = [dim * m for m in dim_mults]
    if block_type == "resnet":
        normed = sorted(set(widths) | {dim})  # every ResNet block ends at one of these widths
        if any(w % resnet_block_groups for w in normed):
            common = 0
            for w in normed:
                common = gcd(common, w)
            valid = [g for g in range(1, common + 1) if common % g == 0]
            raise ValueError(
                f"resnet_block_groups={resnet_block_groups} does not divide every ResNet block width "
                f"{normed} (dim={dim} x dim_mults={dim_mults}); GroupNorm needs it to. Valid values: {valid}"
            )
    if sample_size is not None:
        if isinstance(sample_size, int) and not isinstance(sample_size, bool):
            height = width = sample_size
        elif isinstance(sample_size, (list, tuple)) and len(sample_size) == 2:
            height, width = sample_size
            sample_size = (height, width)
        else:
            raise ValueError(f"sample_size must be an int, a (height, width) pair or None, got {sample_size!r}")
        _check_int("sample_size", height, maximum=MAX_SIDE)
        _check_int("sample_size", width, maximum=MAX_SIDE)
        check_spatial(f"sample_size={sample_size}: side", height, width, num_levels)
    return init_dim, dim_mults, sample_size, linear_attention_levels, attended


def check_sample(config, sample):
    """x_t must be (B, in_channels, H, W) with H and W multiples of 2^(L-1)."""
    if sample.ndim != 4 or sample.shape[1] != config.in_channels:
        raise ValueError(
            f"sample must have shape (batch, {config.in_channels}, height, width) for in_channels="
            f"{config.in_channels}, got {tuple(sample.shape)}"
        )
    check_spatial("input side", sample.shape[2], sample.shape[3], len(config.dim_mults))


def check_class_labels(config, class_labels):
    """y for the class embedding: `class_labels` checked against 0..K-1 (K = num_class_embeds), or K
    ("no class") for None where the model has a null_class_embed; ValueError otherwise."""
    num_classes = config.num_class_embeds
    if num_classes is None:
        raise ValueError("class_labels were given to an unconditional model (built with num_class_embeds=None)")
    has_null = config.get("null_class_embed", False)
    if class_labels is None:
        if not has_null:
            raise ValueError(f"this model is class-conditional (num_class_embeds={num_classes}): pass class_labels")
        return num_classes  # "no class"
    labels = torch.as_tensor(class_labels)
    highest = num_classes if has_null else num_classes - 1
    if labels.numel() and (labels.min() < 0 or labels.max() > highest):
        allowed = f"0..{num_classes - 1}" + (f", or {num_classes} for no class" if has_null else "")
        raise ValueError(f"class_labels must lie in {allowed}; got {labels.flatten().tolist()}")
    return class_labels
