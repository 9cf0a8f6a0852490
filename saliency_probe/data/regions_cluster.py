"""Salient regions as fixation clusters: scikit-learn's mean shift or DBSCAN, and the blob of a cluster.

All observers' fixations of an image are clustered together (``bandwidth`` pixels: mean shift's flat-kernel
radius, DBSCAN's ``eps``); a cluster counts when at least ``min_observers`` distinct observers fixated it. Without
an annotation a region is its cluster's blob: the convex hull of the cluster's fixated pixels dilated by
``dilation`` pixels, where a pixel within reach of several hulls goes to the nearest (OpenCV distance transform),
so blobs never overlap and every fixation of a counted cluster lies inside its blob. docs/regions.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from sklearn.cluster import DBSCAN, MeanShift

from saliency_probe.errors import ConfigError

METHODS = ("meanshift", "dbscan")


@dataclass(frozen=True)
class Cluster:
    """One fixation cluster: the indices of its fixations (rows of the image's points), observers, centre."""

    members: np.ndarray
    n_observers: int
    centre: tuple[float, float]


def cluster_labels(points_xy: np.ndarray, method: str, bandwidth: float, min_samples: int) -> np.ndarray:
    """A cluster label per point (``-1`` = DBSCAN noise), from scikit-learn.

    ``meanshift``: ``MeanShift(bandwidth, bin_seeding=True)`` (flat kernel, every point assigned); ``dbscan``:
    ``DBSCAN(eps=bandwidth, min_samples)``.
    """
    points = np.asarray(points_xy, dtype=np.float64)
    if method not in METHODS:
        raise ConfigError(f"clustering method {method!r} is not supported; choose one of {METHODS}")
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    if method == "meanshift":
        if len(np.unique(points, axis=0)) == 1:  # one location: a single cluster (MeanShift needs spread)
            return np.zeros(len(points), dtype=np.int64)
        return MeanShift(bandwidth=float(bandwidth), bin_seeding=True).fit(points).labels_.astype(np.int64)
    return DBSCAN(eps=float(bandwidth), min_samples=int(min_samples)).fit(points).labels_.astype(np.int64)


def cluster_fixations(
    points_xy: np.ndarray,
    observer: np.ndarray,
    method: str = "meanshift",
    bandwidth: float = 24.0,
    min_observers: int = 3,
    min_samples: int | None = None,
) -> tuple[list[Cluster], int]:
    """The clusters fixated by at least ``min_observers`` observers (largest first) and the number left out.

    ``min_samples`` (DBSCAN only) defaults to ``min_observers``.
    """
    labels = cluster_labels(points_xy, method, bandwidth, min_samples or min_observers)
    observer = np.asarray(observer)
    points = np.asarray(points_xy, dtype=np.float64)
    kept, dropped = [], 0
    for label in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == label)
        n_observers = int(np.unique(observer[members]).size)
        if n_observers < int(min_observers):
            dropped += 1
            continue
        centre = points[members].mean(axis=0)
        kept.append(Cluster(members, n_observers, (float(centre[0]), float(centre[1]))))
    kept.sort(key=lambda c: (-len(c.members), c.centre))
    return kept, dropped


def cluster_blobs(
    clusters: list[Cluster], points_xy: np.ndarray, height: int, width: int, dilation: float
) -> np.ndarray:
    """An int32 ``(H, W)`` map: ``k + 1`` on the blob of ``clusters[k]``, 0 elsewhere.

    Blob ``k``: the pixels within ``dilation`` of the convex hull of the cluster's fixated pixels, and nearer to
    it than to any other hull (ties go to the larger cluster, which comes first).
    """
    labels = np.zeros((height, width), dtype=np.int32)
    if not clusters:
        return labels
    best = np.full((height, width), np.inf, dtype=np.float32)
    points = np.asarray(points_xy, dtype=np.int32)
    for number, cluster in enumerate(clusters):
        hull = cv2.convexHull(points[cluster.members].reshape(-1, 1, 2))
        outside = np.full((height, width), 255, dtype=np.uint8)
        cv2.fillConvexPoly(outside, hull, 0)
        distance = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        nearer = (distance <= dilation) & (distance < best)
        labels[nearer] = number + 1
        best[nearer] = distance[nearer]
    return labels
