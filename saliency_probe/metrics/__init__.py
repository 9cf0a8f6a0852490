"""Saliency metrics: pure functions in ``functional`` and torchmetrics classes (DDP-safe sums and counts).

>>> from saliency_probe.metrics import NSS, RegionNSS
>>> from saliency_probe.metrics.functional import nss, region_nss
"""

from saliency_probe.metrics import functional
from saliency_probe.metrics.classes import CC, NMM, NSS, SIM, AUCJudd, KLDiv, RegionNSS

__all__ = ["functional", "NSS", "CC", "KLDiv", "SIM", "AUCJudd", "RegionNSS", "NMM"]
