"""``python -m saliency_probe.data.popout --out DIR --num N --seed S``: the pop-out generator's command line.

The generator is :mod:`saliency_probe.data.popout_generator`, the reader :mod:`saliency_probe.data.popout_reader`
(docs/popout.md).
"""

from saliency_probe.data.popout_generator import main

if __name__ == "__main__":
    main()
