"""`rep-scratch` and `rep+ce-scratch`: the paper's two methods with the student decoder trained from scratch.

By default (distill.init_from_teacher: true) every student's caption decoder starts as a copy of the
trained teacher's, which the paper does not describe and which narrows the gap between `rep` and
`rep+ce`. These variants run the same stages and loss terms (their own distill.losses entry) with a
freshly initialised decoder, so one sweep shows both side by side (sweeps/methods.yaml); their
trials are tagged avkd.loss=<key> and get their own Table I rows.
"""

from __future__ import annotations

from avkd.config import SCRATCH_SUFFIX
from avkd.methods.base import Method
from avkd.methods.rep import Rep
from avkd.methods.rep_ce import RepCE


def from_scratch(base: type[Method]) -> Method:
    """The method `base` under the key <base key>-scratch, its student decoder never copied from the teacher."""
    variant = type(f"{base.__name__}Scratch", (base,), {"key": base.key + SCRATCH_SUFFIX, "init_from_teacher": False})
    return variant()


METHODS = (from_scratch(Rep), from_scratch(RepCE))
