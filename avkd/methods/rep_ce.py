"""`rep+ce` (the paper): MLP and decoder trained jointly on L_CE + lambda * L_rep (distill.losses["rep+ce"])."""

from __future__ import annotations

from avkd.methods.base import Method


class RepCE(Method):
    key = "rep+ce"  # the default joint stage of Method is exactly this method


METHOD = RepCE()
