"""Container health probe: ask the gRPC health service (grpc.health.v1) whether the server is SERVING.

    python -m serving.healthcheck [--address HOST:PORT] [--service NAME] [--timeout SECONDS]

Exit status 0 when the status is SERVING, 1 otherwise (NOT_SERVING, unknown service, unreachable,
deadline exceeded). Used by the Dockerfile's HEALTHCHECK, so it imports grpc only (no TensorFlow):
it must start in well under a second. The default address comes from $SERVING_HEALTH_ADDRESS
(the image sets 127.0.0.1:8500).
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_ADDRESS = "127.0.0.1:8500"


def check(address: str, service: str = "", timeout: float = 3.0) -> str:
    """Return the health status name ('SERVING', 'NOT_SERVING', ...) or 'UNREACHABLE: <code>'."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:  # pragma: no cover - exercised by the docker smoke test
            return f"UNREACHABLE: {error.code().name}"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument("--address", default=os.environ.get("SERVING_HEALTH_ADDRESS", DEFAULT_ADDRESS))
    parser.add_argument("--service", default="", help="service name; '' = the whole server")
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    status = check(args.address, args.service, args.timeout)
    if not args.quiet:
        print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
