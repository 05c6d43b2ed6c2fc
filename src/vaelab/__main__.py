"""``python -m vaelab`` is the ``vaelab`` command (torchrun's ``-m vaelab`` needs it)."""

from vaelab.cli import command

command()
