"""``python -m bus …`` is the same as the ``bus`` command."""

from bus.cli import main

main()
