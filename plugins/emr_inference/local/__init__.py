"""The ``local`` backend: a Spark standalone cluster on loopback in place of EMR.

:mod:`.cluster` starts, tracks and stops the processes (the twin of EMR's cluster API),
:mod:`.watchdog` is its idle timeout, :mod:`.operators` are the four cluster tasks.
"""
