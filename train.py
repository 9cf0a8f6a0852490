"""Train a saliency model or a scene classifier: ``python train.py [-m] key=value ...`` (see README)."""

import hydra
from omegaconf import DictConfig

from saliency_probe.cli import run, stop_on_user_error
from saliency_probe.training import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@stop_on_user_error
def main(cfg: DictConfig) -> float | None:
    summary = train(cfg)
    return summary["metrics"].get(f"{cfg.task.monitor}")


if __name__ == "__main__":
    run(main, "train.py")
