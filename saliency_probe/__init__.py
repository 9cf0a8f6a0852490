"""saliency_probe: what have deep saliency models learned? (He et al., CVPR 2019, re-implemented; README)."""

from saliency_probe.resolvers import register_resolvers

register_resolvers()
