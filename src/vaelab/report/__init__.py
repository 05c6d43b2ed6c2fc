"""What a finished run shows a person: its test evaluation and pictures (``final``), and
``report.html`` (``build``, imported where it is used: it loads matplotlib)."""

from vaelab.report.final import finish_run

__all__ = ["finish_run"]
