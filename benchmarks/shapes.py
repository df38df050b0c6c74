"""Parameter trees shaped like real models, for the step benchmarks.

A Transformer or a CNN has hundreds of leaves, most of them small (biases,
norm scales), a few large (embeddings, projections): the shape of the tree,
not only its size, decides how fast an optimizer step is. Each function
returns ``{path: shape}`` in the order a model would flatten its parameters.
"""

from __future__ import annotations


def gpt(
    layers: int = 12, d: int = 384, vocab: int = 50304, ctx: int = 1024
) -> dict[str, tuple[int, ...]]:
    """A GPT-2-style decoder: token and position embeddings; per layer two
    LayerNorms (scale and bias), fused qkv and output projections and a 4x MLP,
    each with a bias; a final LayerNorm. ``layers=12, d=384`` is 41M params in
    148 leaves (19M of them the token embedding); ``d=768`` is GPT-2 small."""
    tree: dict[str, tuple[int, ...]] = {"wte": (vocab, d), "wpe": (ctx, d)}
    for i in range(layers):
        p = f"h{i}/"
        tree |= {
            p + "ln1/scale": (d,),
            p + "ln1/bias": (d,),
            p + "attn/qkv/kernel": (d, 3 * d),
            p + "attn/qkv/bias": (3 * d,),
            p + "attn/out/kernel": (d, d),
            p + "attn/out/bias": (d,),
            p + "ln2/scale": (d,),
            p + "ln2/bias": (d,),
            p + "mlp/fc/kernel": (d, 4 * d),
            p + "mlp/fc/bias": (4 * d,),
            p + "mlp/proj/kernel": (4 * d, d),
            p + "mlp/proj/bias": (d,),
        }
    return tree | {"ln_f/scale": (d,), "ln_f/bias": (d,)}


def resnet(
    widths: tuple[int, ...] = (64, 128, 256, 512),
    blocks: int = 2,
    classes: int = 1000,
) -> dict[str, tuple[int, ...]]:
    """A ResNet-18-ish CNN: a 7x7 stem, ``blocks`` basic blocks per stage (two
    3x3 convolutions with BatchNorm scale and bias each, a 1x1 projection
    where the width changes), a dense head. About 11.7M params by default."""
    tree: dict[str, tuple[int, ...]] = {
        "stem/conv": (7, 7, 3, widths[0]),
        "stem/bn/scale": (widths[0],),
        "stem/bn/bias": (widths[0],),
    }
    cin = widths[0]
    for s, w in enumerate(widths):
        for b in range(blocks):
            p = f"stage{s}/block{b}/"
            tree |= {
                p + "conv1": (3, 3, cin, w),
                p + "bn1/scale": (w,),
                p + "bn1/bias": (w,),
                p + "conv2": (3, 3, w, w),
                p + "bn2/scale": (w,),
                p + "bn2/bias": (w,),
            }
            if cin != w:
                tree |= {
                    p + "proj": (1, 1, cin, w),
                    p + "proj_bn/scale": (w,),
                    p + "proj_bn/bias": (w,),
                }
            cin = w
    return tree | {"head/kernel": (cin, classes), "head/bias": (classes,)}


def size(tree: dict[str, tuple[int, ...]]) -> int:
    total = 0
    for shape in tree.values():
        n = 1
        for s in shape:
            n *= s
        total += n
    return total
