"""The XLA behaviours adam_tx's fast path relies on, one module each.

The fused step stays a few loops per parameter with no copy of a donated
buffer because of how XLA schedules and fuses what it is given, not because
of anything JAX promises. Each behaviour the engine leans on is written down
in one module here, with the jax version it was measured on, and pinned by a
micro-HLO test in ``tests/test_xla_rules.py`` that fails when a jax upgrade
changes it (then the trick is either no longer needed or no longer works, and
the pass-count tests in ``tests/test_fast_path.py`` and
``tests/test_conformance.py`` will say which).

* :mod:`adam_tx._engine.xla.ordering`: a bitwise no-op dependency orders one loop
  after another, so a loop overwriting a donated buffer in place runs after
  every loop that still reads it (no copy).
* :mod:`adam_tx._engine.xla.once`: a square root is computed once, where a chain of
  cheap scalar operations (a sum over leaves) is copied into every loop that
  reads it.
* :mod:`adam_tx._engine.reduce` (kept with the sums it shapes): on XLA:CPU a lone
  ``jnp.sum`` of an expression stores the expression first, while a variadic
  ``lax.reduce`` over rows of 8 keeps it in the loop and vectorizes.

Measured with jax and jaxlib 0.10.2 on XLA:CPU (x86_64).
"""
