"""Every knob, parsed and rendered: CLI flags and ``TS_*`` variables (``settings``), per-model
settings (``model_config``), TorchServe's ``config.properties`` (``properties``), its log4j2
configuration (``log4j2``) and metrics declarations (``metrics_yaml``), and the CPU share of
each worker (``cpus``). Pure parsing and rendering: no processes, no network, no I/O beyond
reading the files it is given and writing the one it renders. It is the lowest layer and
imports nothing of this package but ``errors``.
"""
