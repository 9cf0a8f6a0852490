"""Classical saliency models (BMS, GBVS, Itti-Koch, spectral residual) behind one ``SaliencyModel`` interface.

``build_classical("bms")`` (or ``hydra.utils.instantiate`` of ``conf/classical/<name>.yaml``) gives a callable
``model(rgb_uint8_image) -> float32 map`` of the image's size.
"""

from .base import CLASSICAL_MODELS, SaliencyModel, build_classical, check_rgb_image, register
from .bms import BMS
from .gbvs import GBVS
from .itti import IttiKoch
from .spectral import SpectralResidual

__all__ = [
    "BMS",
    "CLASSICAL_MODELS",
    "GBVS",
    "IttiKoch",
    "SaliencyModel",
    "SpectralResidual",
    "build_classical",
    "check_rgb_image",
    "register",
]
