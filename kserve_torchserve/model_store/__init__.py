"""From a storage URI to a TorchServe model store: download in a child process (``fetch``,
``fetch_child``), recognise what was downloaded (``artifacts``), check eager models in a
child (``eager_probe``), archive bare models (``archiver``, with the ``handlers`` it packs)
and lay out the store with one ``ModelSpec`` per model (``build``). It starts no TorchServe
and serves nothing; it may import ``config`` and ``errors`` only.
"""
