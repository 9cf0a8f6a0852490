"""A built region set with its fixations, for the probe: the dataset and the Lightning data module.

:class:`RegionSetDataset` reads the images and fixations of any source the builder reads (OSIE, SALICON 2017 or
2015) and the regions of a built set with the OSIE-SR reader, so its items are those of
:class:`~saliency_probe.data.osie_sr.OsieSrDataset` (for OSIE fixations the two give the same items).
:class:`RegionSetDataModule` builds the set on first use (:func:`~saliency_probe.data.regions_build.ensure_regions`)
and reuses it afterwards (``data=osie_regions``, ``salicon_coco_regions``, ``synthetic_regions``; docs/regions.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from saliency_probe.data.datamodules import data_root, synthetic_kwargs
from saliency_probe.data.fixations import FixationDataset, FixationRecord, flat_indices
from saliency_probe.data.osie_sr import (
    CategorisedRegions,
    collate_regions,
    resolve_class_ids,
)
from saliency_probe.data.regions_build import (
    REGIONS_JSON,
    BuildRequest,
    BuildSettings,
    build_description,
    ensure_regions,
    read_record,
)
from saliency_probe.data.regions_fixations import FixationSource, fixation_source, read_fixation_images
from saliency_probe.data.synthetic import ensure_synthetic
from saliency_probe.errors import ConfigError, MissingInputError
from saliency_probe.maps import fixation_map

PathLike = str | os.PathLike[str]
#: ``annotations: synthetic``: the synthetic set's own annotation (``<root>/osie_sr``, table ``osie_sr``).
SYNTHETIC_ANNOTATION = "synthetic"


class RegionSetDataset(CategorisedRegions, FixationDataset):
    """Images and fixations of ``source`` with the regions of the built set in ``regions_root``.

    Items add ``region_masks`` (bool (R, H, W)) and ``region_categories`` to :class:`FixationDataset` items;
    ``observers(i)`` gives the per-observer pixels. The images are the set's (``regions.json: stems``), in its
    order, the first ``limit`` of them or ``stems``.
    """

    def __init__(
        self,
        source: FixationSource,
        regions_root: PathLike,
        image_size: int = 224,
        limit: int | None = None,
        stems: list[str] | None = None,
    ) -> None:
        super().__init__(image_size)
        self.regions_root = Path(regions_root)
        record = read_record(self.regions_root)
        if record is None:
            raise MissingInputError(f"no built region set in {self.regions_root} (missing {REGIONS_JSON}); build "
                                    "one with `python -m saliency_probe.data.regions build`")
        self.record = record
        built = list(record["stems"])
        if stems is not None:
            unknown = [str(stem) for stem in stems if str(stem) not in set(built)]
            if unknown:
                raise ConfigError(f"{self.regions_root}: requested image(s) {unknown[:10]} are not in the set")
            built = [str(stem) for stem in stems]
        chosen = built[: int(limit)] if limit is not None else built
        self.class_ids = resolve_class_ids(self.regions_root)
        images, report = read_fixation_images(source, stems=chosen)
        self.report.n_clipped = report.n_clipped
        self.report.n_points = report.n_points
        self._observers = []
        for image in images:
            fixated = fixation_map(image.points, image.height, image.width)
            self.records.append(FixationRecord(image.stem, image.image_path, image.height, image.width,
                                               flat_indices(fixated)))
            self._observers.append(image.observers)

    def observers(self, index: int) -> list[np.ndarray]:
        """Per-observer 0-based int64 ``(N, 2)`` ``[x, y]`` pixels of item ``index``."""
        return [pixels.copy() for pixels in self._observers[index]]


class RegionSetDataModule(pl.LightningDataModule):
    """Fixations joined with annotations (or alone) as a region set for the probe, built on first use.

    Args:
        root: the fixation data set (OSIE: ``data/stimuli`` + ``data/eye``; SALICON: ``images/`` +
            ``fixations/``), or the synthetic folder with ``synthetic`` (its ``osie/`` part is read).
        format, split, edition, json_file: the fixation format (``osie`` | ``salicon``) and SALICON's split,
            edition (2017 | 2015) and 2015 JSON file.
        annotations: a COCO instances JSON (``annotations_format: coco``) or a VOC-layout folder (``voc``);
            ``synthetic`` for the synthetic set's own annotation; null for regions from fixations alone.
        keypoints: a COCO person-keypoints JSON (persons split into head and part).
        mapping: the class -> category table (a name in ``conf/regions/`` or a path).
        regions_root: where the set is (built there when absent; default for the synthetic set:
            ``<root>/regions/annotated`` or ``<root>/regions/clusters``).
        build: the builder's settings (:class:`~saliency_probe.data.regions_build.BuildSettings`).
    """

    def __init__(
        self,
        root: PathLike | None = None,
        regions_root: PathLike | None = None,
        format: str = "osie",
        split: str = "val",
        edition: str = "2017",
        json_file: PathLike | None = None,
        annotations: PathLike | None = None,
        annotations_format: str = "coco",
        keypoints: PathLike | None = None,
        mapping: str = "coco",
        build: dict[str, Any] | None = None,
        image_size: int = 224,
        batch_size: int = 8,
        num_workers: int = 0,
        on_error: str = "raise",
        limit: int | None = None,
        stems: list[str] | None = None,
        synthetic: bool | dict | None = None,
        seed: int = 0,
        **synthetic_sizes: Any,
    ) -> None:
        super().__init__()
        self.synthetic = synthetic_kwargs(synthetic, int(seed), **synthetic_sizes)
        self.root = data_root(root, self.synthetic)
        is_synthetic = str(annotations) == SYNTHETIC_ANNOTATION
        if is_synthetic and self.synthetic is None:
            raise ConfigError("data.annotations=synthetic reads the synthetic set's own annotation: set synthetic=true")
        fixation_root = self.root / "osie" if self.synthetic is not None else self.root
        self.source = fixation_source("osie" if self.synthetic is not None else format, fixation_root, split,
                                      edition, json_file)
        self.annotations = (SYNTHETIC_ANNOTATION if is_synthetic else
                            Path(annotations).expanduser().absolute() if annotations is not None else None)
        self.keypoints = Path(keypoints).expanduser().absolute() if keypoints is not None else None
        if is_synthetic:
            spec: dict[str, str | None] | None = {"format": "voc", "path": str(self.root / "osie_sr"), "keypoints": None}
            mapping = "osie_sr"
        elif annotations is not None:
            spec = {"format": str(annotations_format), "path": str(self.annotations),
                    "keypoints": str(self.keypoints) if self.keypoints else None}
        else:
            spec = None
        if regions_root is None:
            if self.synthetic is None:
                raise ConfigError("data.regions_root is required (where the region set is built)")
            regions_root = self.root / "regions" / ("annotated" if spec is not None else "clusters")
        self.regions_root = Path(regions_root).expanduser().absolute()
        self.mapping = str(mapping)
        self.settings = BuildSettings(**dict(build or {}))
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.on_error = on_error
        self.limit = limit
        self.stems = [str(stem) for stem in stems] if stems is not None else None  # Hydra gives 1001 as int
        self.request = BuildRequest(self.source, spec, self.mapping, self.settings, limit,
                                    tuple(self.stems) if self.stems is not None else None, on_error)
        self._dataset: RegionSetDataset | None = None

    def prepare_data(self) -> None:
        if self.synthetic is not None:
            ensure_synthetic(self.root, **self.synthetic)

    @property
    def dataset(self) -> RegionSetDataset:
        """The probe's dataset (the region set is built first when ``regions_root`` holds none)."""
        if self._dataset is None:
            self.prepare_data()
            ensure_regions(self.request, self.regions_root)
            self._dataset = RegionSetDataset(self.source, self.regions_root, self.image_size, self.limit, self.stems)
        return self._dataset

    @property
    def categories(self) -> list[str]:
        return self.dataset.categories

    def setup(self, stage: str | None = None) -> None:
        _ = self.dataset

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, collate_fn=collate_regions)

    def summary(self) -> dict[str, Any]:
        """What was read (the keys every data module reports) and how the regions were built
        (``built_regions``: :func:`~saliency_probe.data.regions_build.build_description`)."""
        data = self.dataset
        return {
            "fixation_source": self.source.record(),
            "regions_root": str(self.regions_root),
            "images": len(data),
            "fixations": data.n_fixation_points,
            "clipped_fixations": data.n_clipped,
            "without_fixations": list(data.record.get("images_without_fixations", [])),
            "skipped": list(data.record.get("skipped", [])),
            "class_ids": {str(key): value for key, value in data.class_ids.items()},
            "built_regions": build_description(data.record),
        }
