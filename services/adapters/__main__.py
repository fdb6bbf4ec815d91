"""``python -m services.adapters``: the ``bus adapter`` commands, without the ``bus`` CLI."""

from services.adapters.cli import app

app(prog_name="python -m services.adapters")
