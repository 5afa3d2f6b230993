"""The ``rbridge`` command."""
