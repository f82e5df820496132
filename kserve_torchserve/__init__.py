"""kserve-torchserve: the PyTorch runtime for KServe, TorchServe behind KServe's model server.

Layers, lowest first; each imports only those below it (an import-linter contract in
setup.cfg, run by the tests, keeps it so): ``errors`` < ``config`` < ``model_store`` <
``backend`` < ``serving`` < ``management`` < the program: ``summary`` (the start-up block),
``server`` (the lifecycle) and ``check`` (start-up short of serving), then ``__main__``.
"""

__version__ = "0.1.0"
