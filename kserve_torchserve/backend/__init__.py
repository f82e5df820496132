"""The TorchServe child and every way we talk to it: the process and its launcher
(``process``, ``launcher``), keeping it alive (``supervisor``), its token keys (``auth``), its
gRPC stubs (``grpc_stubs``), the kept-alive HTTP pool (``http_pool``), the client built on
both (``client``) and free loopback ports (``ports``). It knows nothing of KServe's
protocols; it may import ``model_store``, ``config`` and ``errors``, never ``serving``,
``management`` or the top level.
"""
