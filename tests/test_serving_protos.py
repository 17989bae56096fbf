"""The committed explain.v1 stubs are current: regenerating them into a temporary directory gives
identical files (run ``python serving/protos/generate.py`` after editing explain.proto)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_generated_stubs_are_current(tmp_path):
    from serving.protos.generate import GENERATED

    # In a child process: grpc_tools.protoc and TensorFlow must not share a process.
    out = subprocess.run([sys.executable, str(REPO / "serving/protos/generate.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    for rel in GENERATED:
        fresh = (tmp_path / rel).read_text()
        committed = (REPO / rel).read_text()
        assert fresh == committed, f"{rel} is stale: run `python serving/protos/generate.py`"


def test_stubs_describe_the_service():
    from serving.protos.explain.v1 import explain_pb2

    service = explain_pb2.DESCRIPTOR.services_by_name["ExplanationService"]
    assert service.full_name == "explain.v1.ExplanationService"
    assert [m.name for m in service.methods] == ["ListModels", "Explain", "SimilarityMap", "ImportanceMask"]
    field = explain_pb2.ExplainResponse.DESCRIPTOR.fields_by_name["heatmap"]
    assert field.message_type.full_name == "tensorflow.TensorProto"
