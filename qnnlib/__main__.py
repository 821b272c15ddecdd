"""``python -m qnnlib``: the command line of :mod:`qnnlib.cli`."""

from qnnlib.cli import main

raise SystemExit(main())
