"""What KServe clients hit, for one model version: the ``kserve.Model`` that forwards to
TorchServe (``model``), payloads <-> TorchServe rows (``codec``), kserve's REST server and
DataPlane as we run them (``rest``), the REST and gRPC fast paths (``rest_fastpath``,
``grpc_fastpath``) and the one ``/metrics`` scrape (``metrics``). It may import ``backend``,
``model_store``, ``config`` and ``errors``; it never changes what is served (that is
``management``) and never imports the top level.
"""
