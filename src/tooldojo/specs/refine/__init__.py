"""Refinement of a raw spec corpus into a tool pool (InfTool's first stage).

Filters with counted reasons (:mod:`.filters`), cleaning (:mod:`.clean`), near-duplicate
merge (:mod:`.merge`), domains (:mod:`.domains`), the tool graph (:mod:`.graph`), the report
(:mod:`.report`); :func:`refine` runs them in order (:mod:`.run`).
"""

from tooldojo.specs.refine.report import RefineReport
from tooldojo.specs.refine.run import RefineOptions, refine

__all__ = ["RefineOptions", "RefineReport", "refine"]
