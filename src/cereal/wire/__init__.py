"""The ``cereal.v1`` protocol, shared by the gRPC server and its client, internal to cereal.

What both ends of a ``cereal serve`` connection must agree on, and nothing
else: the service declared in ``proto/cereal_v1.proto`` with its generated
modules (``python -m cereal.wire.codegen`` regenerates them), records of
:mod:`cereal.models` to and from their messages (:mod:`.convert`), errors to
status codes and back (:mod:`.error_status`), the domain name rule
(:mod:`.domain_names`), the request metadata keys (:mod:`.metadata`) and the
message size limits and channel options (:mod:`.limits`).

The server (:mod:`cereal.server`) and the client driver
(:mod:`cereal.drivers.grpc`) each import this package; it imports neither.
"""
