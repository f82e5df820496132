"""What KServe clients hit, for one model version: the ``kserve.Model`` that forwards to
TorchServe (``model``), payloads <-> TorchServe rows (``codec``, ``tensors``), kserve's REST
server and DataPlane as we run them (``rest``), the REST and gRPC fast paths
(``rest_fastpath`` with its ASGI pieces in ``asgi`` and the common v2 body in ``v2_json``;
``grpc_fastpath``, ``grpc_repository``), what a bad request gets and logs (``errors``,
``logs``, ``limits``, ``deadlines``, whose transport also sends each answer in one write),
the ``/openapi.json`` it publishes (``openapi``) and the one ``/metrics`` scrape (``metrics``).
It may import ``backend``, ``model_store``, ``config`` and ``errors``; it never changes what
is served (that is ``management``) and never imports the top level.
"""
