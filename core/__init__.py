"""Vigie's core: signals, tickets, workflow, history, tenancy and the hook specs."""

from core.hookspecs import hookimpl

__all__ = ["hookimpl"]
