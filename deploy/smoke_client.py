"""Smoke client for the serving container, written against the stock TF Serving API only.

    python deploy/smoke_client.py --address 127.0.0.1:8500 --model simpler --size 64 [--wait 120]

1. waits until ``grpc.health.v1`` reports SERVING (overall and PredictionService);
2. ``Predict`` on ``serving_default``: probabilities (N, C) that sum to 1;
3. ``Predict`` with ``signature_name='gradcam'``: heatmap_upsampled (N, H, W) in [0, 1];
4. ``GetModelMetadata``: the signatures include gradcam.

Deliberately uses nothing of this project (``tensorflow_serving.apis`` stubs and
``tf.make_tensor_proto`` / ``tf.make_ndarray``), as any TF Serving client would. Prints one line
per check and exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def wait_serving(channel, timeout: float) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    last = "no answer"
    for service in ("", "tensorflow.serving.PredictionService"):
        while True:
            try:
                r = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
                if last == "SERVING":
                    break
            except grpc.RpcError as error:
                last = error.code().name
            if time.monotonic() > deadline:
                raise SystemExit(f"FAIL health {service or '(server)'}: not SERVING after {timeout:.0f} s (last: {last})")
            time.sleep(1.0)
        print(f"ok   health {service or '(server)'}: SERVING")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:8500")
    parser.add_argument("--model", required=True)
    parser.add_argument("--size", type=int, required=True, help="input height = width of the model")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for SERVING")
    args = parser.parse_args(argv)

    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

    options = [("grpc.max_receive_message_length", 64 * 2**20), ("grpc.max_send_message_length", 64 * 2**20)]
    with grpc.insecure_channel(args.address, options=options) as channel:
        wait_serving(channel, args.wait)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(args.batch, args.size, args.size, 3), dtype=np.uint8)

        request = predict_pb2.PredictRequest()
        request.model_spec.name = args.model
        request.model_spec.signature_name = "serving_default"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
        t0 = time.perf_counter()
        response = stub.Predict(request, timeout=60)
        ms = (time.perf_counter() - t0) * 1e3
        probs = tf.make_ndarray(response.outputs["probabilities"])
        if probs.shape[0] != args.batch or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
            raise SystemExit(f"FAIL predict: probabilities {probs.shape} do not sum to 1: {probs.sum(axis=1)}")
        print(f"ok   predict serving_default: probabilities {probs.shape}, version {response.model_spec.version.value}, {ms:.0f} ms")

        request = predict_pb2.PredictRequest()
        request.model_spec.name = args.model
        request.model_spec.signature_name = "gradcam"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
        request.inputs["class_index"].CopyFrom(tf.make_tensor_proto(np.full((args.batch,), -1, np.int32)))
        t0 = time.perf_counter()
        response = stub.Predict(request, timeout=60)
        ms = (time.perf_counter() - t0) * 1e3
        heat = tf.make_ndarray(response.outputs["heatmap_upsampled"])
        if heat.shape != (args.batch, args.size, args.size) or not (0.0 <= heat.min() and heat.max() <= 1.0):
            raise SystemExit(f"FAIL gradcam: heatmap_upsampled {heat.shape} range [{heat.min()}, {heat.max()}]")
        classes = tf.make_ndarray(response.outputs["class_index"])
        if not np.array_equal(classes, probs.argmax(axis=1)):
            raise SystemExit(f"FAIL gradcam: class_index {classes} != predicted {probs.argmax(axis=1)}")
        print(f"ok   predict gradcam: heatmap_upsampled {heat.shape} in [{heat.min():.3f}, {heat.max():.3f}], {ms:.0f} ms")

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = args.model
        response = stub.GetModelMetadata(request, timeout=30)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sig_map)
        names = sorted(sig_map.signature_def)
        if "gradcam" not in names or "serving_default" not in names:
            raise SystemExit(f"FAIL metadata: signatures {names}")
        print(f"ok   metadata: {len(names)} signatures ({', '.join(names)})")

        try:
            bad = predict_pb2.PredictRequest()
            bad.model_spec.name = "no-such-model"
            bad.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
            stub.Predict(bad, timeout=30)
            raise SystemExit("FAIL error mapping: unknown model answered OK")
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise SystemExit(f"FAIL error mapping: unknown model gave {error.code().name}: {error.details()}")
            print(f"ok   unknown model: NOT_FOUND ({error.details()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
