"""Regenerate the checked-in protobuf and gRPC modules from ``cereal_v1.proto``.

Run ``python -m cereal.wire.codegen`` after editing the ``.proto``;
a test checks that the checked-in files equal a fresh generation.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent / "proto"
PROTO_NAME = "cereal_v1.proto"
GENERATED = ("cereal_v1_pb2.py", "cereal_v1_pb2.pyi", "cereal_v1_pb2_grpc.py")
_PACKAGE_ROOT = PROTO_DIR.parents[2]  # the directory holding the ``cereal`` package


def generate(out_dir: Path) -> dict[str, bytes]:
    """Generate the modules into ``out_dir``; returns their contents by file name.

    Raises:
        RuntimeError: ``grpcio-tools`` is missing or ``protoc`` failed.
    """
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - grpcio-tools is a dev dependency
        raise RuntimeError("regenerating needs grpcio-tools (pip install grpcio-tools)") from exc
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    relative = PROTO_DIR.relative_to(_PACKAGE_ROOT) / PROTO_NAME
    status = protoc.main(
        [
            "protoc",
            f"-I{_PACKAGE_ROOT}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(relative),
        ]
    )
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status}")
    produced = out_dir / PROTO_DIR.relative_to(_PACKAGE_ROOT)
    return {name: (produced / name).read_bytes() for name in GENERATED}


def main() -> None:
    """Write fresh generated modules next to the ``.proto``."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in generate(Path(tmp)).items():
            (PROTO_DIR / name).write_bytes(content)
            sys.stderr.write(f"wrote {PROTO_DIR / name}\n")


if __name__ == "__main__":
    main()
