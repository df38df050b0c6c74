"""The training application behind the ``adam-tx`` command (private).

* ``commands``: the commands that train: demo and lr-find.
* ``compare``: ``adam-tx compare``, optimizers head to head on the character LM.
* ``runs``: training runs: optimizers by name, the jitted step, metrics, plots.
* ``outdir``: the output folder of a run: locked, written without surprises.
* ``bench``: ``adam-tx bench``, the optimizer step-time benchmark.

The command line itself is :mod:`adam_tx.cli`; the model and corpus are
:mod:`adam_tx.charlm`.
"""
