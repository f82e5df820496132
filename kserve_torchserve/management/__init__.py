"""What is served, changed at run time: which models and versions exist, which version
answers a request, and the operations that register, unregister, scale and switch them
(every door, HTTP, the v2 repository extension, gRPC and the supervisor's re-registration
after a TorchServe restart, calls the same operations). It may import ``serving``,
``backend``, ``model_store``, ``config`` and ``errors``, never the top level (``server``
hands it what it needs).
"""
