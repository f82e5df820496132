"""What is served, changed at run time: which models and versions exist (``registry``,
``served``, ``registration``), which version answers a request (``traffic``), and the
operations that register, unregister, scale and switch them (``operations``; every door
calls them: the HTTP routes in ``api`` with their ``params``, the v2 repository extension in
``repository``, gRPC, and the supervisor's re-registration after a TorchServe restart), with
their key and allow-list (``security``, ``sources``), wired together in ``service``. It may
import ``serving``, ``backend``, ``model_store``, ``config`` and ``errors``, never the top
level (``server`` hands it what it needs).
"""
