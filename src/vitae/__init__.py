"""VITAE: generative models that disentangle appearance from perspective.

Detlefsen & Hauberg, "Explicit Disentanglement of Appearance and Perspective in Generative
Models", NeurIPS 2019. Layers: ``transforms`` (T_gamma), ``models``, ``data``, ``metrics``,
``training``, ``plotting`` and the command line ``cli``.
"""

from vitae import allocator

allocator.keep_freed_memory()  # large tensors reuse freed memory rather than fault in fresh pages

__version__ = "0.1.0"
