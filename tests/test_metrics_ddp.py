"""Every metric class gives the 1-process value under 2-process DDP (gloo, CPU) on the same data, with an
uneven split of images between the ranks (docs/protocol.md, DDP: states are sums and counts reduced by sum)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from saliency_probe.metrics import CC, NMM, NSS, SIM, AUCJudd, KLDiv, RegionNSS

CATEGORIES = ["face", "text", "object", "never"]
BATCH_SIZES = [3, 1, 2, 4, 1]  # 11 images in 5 batches
RANK_BATCHES = {0: [0, 1, 2], 1: [3, 4]}  # 6 images on rank 0, 5 on rank 1


def _batch(index: int) -> dict:
    """Deterministic batch ``index``: predictions, fixations, ground truth, regions, pop-out masks."""
    rng = np.random.default_rng(100 + index)
    b, size = BATCH_SIZES[index], (20, 28)
    fix = (rng.random((b, *size)) > 0.93).astype(np.float32)
    if index in (1, 3):
        fix[0] = 0  # images without fixations on both ranks
    masks = [torch.from_numpy(rng.random((int(rng.integers(0, 4)), *size)) > 0.5) for _ in range(b)]
    cats = [[CATEGORIES[int(c)] for c in rng.integers(0, 3, size=m.shape[0])] for m in masks]
    target = np.zeros((b, *size), np.float32)
    for i in range(b):
        if index != 4:  # the last batch's target masks are empty
            target[i, 4:10, 5 + i : 12 + i] = 1
    return {
        "pred": torch.from_numpy(rng.random((b, 5, 7))),
        "fix": torch.from_numpy(fix),
        "gt": torch.from_numpy(rng.random((b, *size)) ** 2),
        "act": torch.from_numpy(np.maximum(rng.standard_normal((b, 6, 5, 7)), 0)),
        "masks": masks,
        "cats": cats,
        "target": torch.from_numpy(target),
    }


def _run(batch_indices: list[int]) -> dict[str, torch.Tensor]:
    """Update every metric on the given batches and read every result (collective under DDP)."""
    scalar = {"nss": NSS(), "cc": CC(), "kld": KLDiv(), "sim": SIM(), "auc": AUCJudd()}
    region, nmm = RegionNSS(num_units=6, categories=CATEGORIES), NMM(num_units=6)
    for index in batch_indices:
        data = _batch(index)
        scalar["nss"].update(data["pred"], data["fix"])
        scalar["auc"].update(data["pred"], data["fix"])
        for name in ("cc", "kld", "sim"):
            scalar[name].update(data["pred"], data["gt"])
        region.update(data["act"], data["fix"], data["masks"], data["cats"])
        nmm.update(data["act"], data["target"])
    out = {name: metric.compute() for name, metric in scalar.items()}
    out |= {f"{name}_excluded": torch.tensor(metric.excluded_images) for name, metric in scalar.items()}
    out |= {
        "region_means": region.compute(),
        "region_top2": region.top_k_mean(k=2),
        "region_above": region.count_above(threshold=0.3),
        "region_counts": region.region_counts(),
        "region_std": region.unit_std(),
        "region_excluded": torch.tensor([region.excluded_regions, region.excluded_images]),
        "nmm": nmm.compute(),
        "nmm_std": nmm.unit_std(),
        "nmm_top": nmm.top_k_mean(k=3),
        "nmm_excluded": torch.tensor(nmm.excluded_images),
    }
    return out


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        results = _run(RANK_BATCHES[rank])
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_ddp_equals_one_process(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    single = _run(list(range(len(BATCH_SIZES))))
    assert (
        int(single["nss_excluded"]) == 2 and int(single["nmm_excluded"]) == 1
    )  # the data exercise exclusion
    assert int(single["region_counts"].sum()) > 0 and int(single["region_excluded"][0]) > 0
    for rank in (0, 1):
        ranked = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert ranked.keys() == single.keys()
        for name, expected in single.items():
            got = ranked[name]
            if expected.is_floating_point():
                # sums in another order: equal to float64 rounding
                torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12, equal_nan=True, msg=name)
            else:
                assert torch.equal(got, expected), name
