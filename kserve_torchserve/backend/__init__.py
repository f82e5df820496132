"""The TorchServe child and every way we talk to it: the files it starts from (``configure``),
the process and its launcher (``process``, ``launcher``), keeping it alive (``supervisor``,
``health``), its token keys (``auth``), its gRPC stubs (``grpc_stubs``), the kept-alive HTTP
pool (``http_pool``), the client built on both (``client``) and its management calls
(``model_admin``), what its answers and lines mean when things fail (``failures``, ``oom``,
``worker_log``) and free loopback ports (``ports``). It knows nothing of KServe's protocols;
it may import ``model_store``, ``config`` and ``errors``, never ``serving``, ``management``
or the top level.
"""
