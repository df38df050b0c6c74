"""``python -m adam_tx``: the ``adam-tx`` command (see :mod:`adam_tx.cli`)."""

import sys

from adam_tx.cli import main

if __name__ == "__main__":
    sys.exit(main())
