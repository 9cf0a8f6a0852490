"""Probe what deep saliency models learned: ``python probe.py [ckpt=... | sweep=... | backbone.weights=...]``.

See docs/probe.md; the tables and figures land in the run folder (outputs/probe/<time>/).
"""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from saliency_probe.cli import run, stop_on_user_error
from saliency_probe.probe.runner import run_probe

#: Overrides that choose a backbone (a checkpoint of another backbone is then refused).
BACKBONE_KEYS = ("backbone", "backbone.name", "backbone._target_")


@hydra.main(version_base="1.3", config_path="conf", config_name="probe")
@stop_on_user_error
def main(cfg: DictConfig) -> None:
    overrides = [str(item).lstrip("+~").split("=", 1)[0] for item in HydraConfig.get().overrides.task]
    run_probe(cfg, explicit_backbone=any(key in BACKBONE_KEYS for key in overrides))


if __name__ == "__main__":
    run(main, "probe.py")
