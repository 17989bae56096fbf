"""Generate the Python stubs of ``serving/protos/explain/v1/explain.proto``.

Usage::

    python serving/protos/generate.py            # rewrites the committed stubs in place
    python serving/protos/generate.py --out DIR  # writes DIR/serving/protos/explain/v1/*.py(i)

The proto imports ``tensorflow/core/framework/tensor.proto``. The TensorFlow wheel ships the
compiled ``tensor_pb2`` module but not the ``.proto`` source, so this script first dumps the
descriptors of that file and its dependencies from the installed TensorFlow into a
``FileDescriptorSet`` (in a child process: TensorFlow and ``grpc_tools.protoc`` each bundle a
protobuf runtime and must not share a process), then runs ``grpc_tools.protoc`` with
``--descriptor_set_in``. The generated ``explain_pb2.py`` imports
``tensorflow.core.framework.tensor_pb2``, the same module the TF Serving API uses.

The output is deterministic for a given grpcio-tools version; ``tests/test_serving_protos.py``
regenerates into a temporary directory and compares with the committed files.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_FILES = ("serving/protos/explain/v1/explain.proto",)
GENERATED = (
    "serving/protos/explain/v1/explain_pb2.py",
    "serving/protos/explain/v1/explain_pb2.pyi",
    "serving/protos/explain/v1/explain_pb2_grpc.py",
)

_DUMP_TF_DESCRIPTORS = r"""
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from google.protobuf import descriptor_pb2
from tensorflow.core.framework import tensor_pb2

files = descriptor_pb2.FileDescriptorSet()
seen = set()

def add(fd):
    if fd.name in seen:
        return
    for dep in fd.dependencies:
        add(dep)
    seen.add(fd.name)
    proto = descriptor_pb2.FileDescriptorProto()
    fd.CopyToProto(proto)
    files.file.append(proto)

add(tensor_pb2.DESCRIPTOR)
with open(sys.argv[1], "wb") as fh:
    fh.write(files.SerializeToString(deterministic=True))
"""


def dump_tensorflow_descriptors(path: Path) -> None:
    """Write the ``FileDescriptorSet`` of ``tensorflow/core/framework/tensor.proto`` to ``path``."""
    subprocess.run([sys.executable, "-c", _DUMP_TF_DESCRIPTORS, str(path)], check=True)


def generate(out_dir: Path = REPO_ROOT) -> list[Path]:
    """Generate the stubs under ``out_dir`` (mirroring the repository layout); return their paths."""
    from grpc_tools import protoc  # imported here: never in a process that imported TensorFlow

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        descriptors = Path(tmp) / "tensorflow_tensor.binpb"
        dump_tensorflow_descriptors(descriptors)
        args = [
            "grpc_tools.protoc",
            f"--descriptor_set_in={descriptors}",
            f"-I{REPO_ROOT}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *PROTO_FILES,
        ]
        rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError(f"grpc_tools.protoc failed with exit code {rc}")
    return [out_dir / p for p in GENERATED]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT, help="output root (default: the repository)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
