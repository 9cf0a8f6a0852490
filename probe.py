"""Probe what deep saliency models learned: ``python probe.py [ckpt=... | sweep=... | backbone.weights=...]``.

See docs/probe.md; the tables and figures land in the run folder (outputs/probe/<time>/).
"""

import hydra
from omegaconf import DictConfig

from saliency_probe.cli import run, stop_on_user_error
from saliency_probe.probe.runner import run_probe


@hydra.main(version_base="1.3", config_path="conf", config_name="probe")
@stop_on_user_error
def main(cfg: DictConfig) -> None:
    run_probe(cfg)


if __name__ == "__main__":
    run(main, "probe.py")
