"""What a finished run shows a person: its test evaluation and pictures (``final``)."""

from vaelab.report.final import finish_run

__all__ = ["finish_run"]
