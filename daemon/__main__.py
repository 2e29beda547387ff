"""``python -m daemon``: the same as the ``firewalld`` command (the shim starts it this way)."""

from shim.guard import firewalld

firewalld()
