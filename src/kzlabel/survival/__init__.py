"""Survival under platform transformations: `kzlabel stress` and :func:`kzlabel.stress`.

``transforms/`` defines what platforms do to uploads (one module per media family, shared with the tests and the
benchmarks); ``runner`` applies them to a labelled file and verifies each version; ``previews`` and ``render`` make
the report readable (a rich table, JSON, one self-contained HTML page). docs/stress.md describes it all.
"""

from __future__ import annotations

from .runner import StressReport, Version, stress

__all__ = ["StressReport", "Version", "stress"]
