"""The engine every adam_tx transform is built on (private; paths may change).

* ``fusion``: :class:`Piece`, the per-leaf math of a transform, and ``chain``,
  which fuses adjacent pieces into one elementwise pass per parameter leaf.
* ``stateful``: the common shape of a stateful transform (count, hyperparameters,
  moments; ``counted_transform``, ``SplitMath``).
* ``stateless``: transforms optax keeps stateless, whose ``update`` takes ``None``.
* ``reduce``: sums of squares that compile into one fast loop on every backend.
* ``leafwise``: which parameter leaves a transform treats alike, read from its
  program (for ``group_small_leaves``).
* ``placement``: where state is born (the parameters' sharding, or replicated).
* ``storage``: the moment storage options every moment-keeping alias accepts.
* ``counting``: the step counter every stateful transform keeps.
* ``dtypes``: the dtype policy (hyperparameter and compute dtypes).
* ``tree``: pytree helpers: path names, structure checks with readable errors.
* ``typing``: the types of hyperparameter arguments, as public signatures spell
  them.
* ``validate``: argument checks run when a transform is built, never while
  tracing.
* ``wrapper_args``: argument checks shared by the wrappers (the wrapped
  transform, bounded integers).
* ``xla``: the XLA behaviours the fast path relies on, one module each, pinned
  by ``tests/test_xla_rules.py``.
"""
