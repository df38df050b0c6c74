"""A small character-level Transformer language model and its corpus.

The task behind ``adam-tx demo``, ``lr-find`` and ``compare``: predict the next
byte of Python source, on the standard library's own ``.py`` files (a corpus
that ships with every Python). Files are taken in sorted order, every tenth
one held out, so that the split is the same on every machine with the same
Python version.

The model is a pre-LayerNorm causal Transformer (Vaswani et al., "Attention Is
All You Need", 2017) written with ``flax.nnx``; the loss is the mean
next-token cross-entropy in nats per character.
"""

from __future__ import annotations

import pathlib
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

VOCAB = 128  # ASCII; any other byte becomes 0


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the Transformer (defaults fit a 2-core CPU in about 2 minutes)."""

    seq_len: int = 64
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 512


@dataclass(frozen=True)
class Corpus:
    """Train and held-out token arrays (uint8 codes < ``VOCAB``) and file counts."""

    train: np.ndarray
    heldout: np.ndarray
    n_train_files: int
    n_heldout_files: int


def stdlib_files() -> list[pathlib.Path]:
    """The standard library's top-level ``.py`` files, sorted by name."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no .py files found in the standard library {root}")
    return files


def encode(data: bytes) -> np.ndarray:
    """Bytes to tokens: ASCII bytes keep their code, any other byte becomes 0."""
    arr = np.frombuffer(data, np.uint8)
    return np.where(arr < VOCAB, arr, 0).astype(np.uint8)


def load_corpus(max_chars: int = 2_000_000, heldout_every: int = 10) -> Corpus:
    """Read the standard library's source: every ``heldout_every``-th file
    (in sorted order) is held out; reading stops once ``max_chars`` are read
    and at least one file is held out."""
    train: list[np.ndarray] = []
    heldout: list[np.ndarray] = []
    total = 0
    for i, path in enumerate(stdlib_files()):
        tokens = encode(path.read_bytes())
        (heldout if i % heldout_every == heldout_every - 1 else train).append(tokens)
        total += tokens.size
        if total >= max_chars and heldout:
            break
    if not train or not heldout:
        raise ValueError("the corpus is too small for a train/held-out split")
    return Corpus(
        np.concatenate(train), np.concatenate(heldout), len(train), len(heldout)
    )


def sample_batch(
    tokens: np.ndarray, rng: np.random.Generator, batch: int, seq_len: int
) -> np.ndarray:
    """``batch`` random windows of ``seq_len + 1`` tokens (inputs and targets)."""
    starts = rng.integers(0, tokens.size - seq_len - 1, size=batch)
    return np.stack([tokens[s : s + seq_len + 1] for s in starts]).astype(np.int32)


def eval_batches(tokens: np.ndarray, n: int, batch: int, seq_len: int) -> np.ndarray:
    """A fixed set of ``n`` batches, evenly spread over ``tokens``."""
    total = n * batch
    starts = np.linspace(0, tokens.size - seq_len - 2, total).astype(np.int64)
    windows = np.stack([tokens[s : s + seq_len + 1] for s in starts])
    return windows.reshape(n, batch, seq_len + 1).astype(np.int32)


class Block(nnx.Module):
    """Pre-LayerNorm block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs) -> None:
        self.norm1 = nnx.LayerNorm(cfg.d_model, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(
            cfg.n_heads, cfg.d_model, decode=False, rngs=rngs
        )
        self.norm2 = nnx.LayerNorm(cfg.d_model, rngs=rngs)
        self.up = nnx.Linear(cfg.d_model, cfg.d_ff, rngs=rngs)
        self.down = nnx.Linear(cfg.d_ff, cfg.d_model, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        x = x + self.attn(self.norm1(x), mask=mask)
        return x + self.down(nnx.gelu(self.up(self.norm2(x))))


class CharTransformer(nnx.Module):
    """A causal Transformer over ``VOCAB`` characters with learned positions."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs) -> None:
        self.cfg = cfg
        self.embed = nnx.Embed(VOCAB, cfg.d_model, rngs=rngs)
        self.pos_embed = nnx.Embed(cfg.seq_len, cfg.d_model, rngs=rngs)
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.norm = nnx.LayerNorm(cfg.d_model, rngs=rngs)
        self.head = nnx.Linear(cfg.d_model, VOCAB, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        n = tokens.shape[-1]
        x = self.embed(tokens) + self.pos_embed(jnp.arange(n))
        mask = nnx.make_causal_mask(tokens)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x))


def loss_fn(model: CharTransformer, batch: jax.Array) -> jax.Array:
    """Mean next-character cross-entropy (nats) of ``batch[:, 1:]`` given the past."""
    logits = model(batch[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()


def make_model(cfg: ModelConfig, seed: int) -> tuple[nnx.GraphDef, nnx.State]:
    """A fresh model, split into its graph definition and parameters."""
    model = CharTransformer(cfg, nnx.Rngs(seed))
    graphdef, params = nnx.split(model, nnx.Param)
    return graphdef, params


def functional_loss(
    graphdef: nnx.GraphDef,
) -> Callable[[nnx.State, jax.Array], jax.Array]:
    """``(params, batch) -> loss`` for the model with graph ``graphdef``."""

    def f(params: nnx.State, batch: jax.Array) -> jax.Array:
        return loss_fn(nnx.merge(graphdef, params), batch)

    return f
