"""Does lava-dl's own netx loader read the `model.net` the loihi target writes? Loads it with
`lava.lib.dl.netx.hdf5.Network` and records the layers lava-dl builds from it.

lava-dl 0.6.0 declares Python < 3.11 and pins an old torch, so it is not part of the set-up: `make
check-netx` installs it with --no-deps into a separate folder (LAVA_DL_DIR) and runs this script.
lava-dl's `slayer` package imports its object-detection helpers (cv2, torchvision) when imported;
netx's HDF5 reader uses neither, so empty stand-ins are put in their place, and nothing calls them.

    python benchmarks/netx_loader.py runs/loihi/model.net --lava-dl /tmp/lava-dl --json
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit

from snnctl.backends import lava_compat


def load_with_netx(net_path: Path, lava_dl: Path) -> dict[str, object]:
    for name in ("cv2", "torchvision", "torchvision.ops", "torchvision.transforms"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["torchvision"].ops = sys.modules["torchvision.ops"]  # type: ignore[attr-defined]
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]  # type: ignore[attr-defined]
    lava_compat.import_lava("lava.magma.compiler.var_model")
    import lava

    lava.__path__.append(str(lava_dl / "lava"))  # lava-dl's lava.lib.dl beside lava-nc's lava
    sys.path.append(str(lava_dl))
    from lava.lib.dl import netx

    net = netx.hdf5.Network(net_config=str(net_path))
    return {"file": str(net_path), "loader": "lava.lib.dl.netx.hdf5.Network (lava-dl 0.6.0)",
            "layers": [{"type": type(layer).__name__, "shape": [int(v) for v in layer.shape]} for layer in net.layers],
            "input_shape": [int(v) for v in net.input_shape] if net.input_shape else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("net", type=Path)
    parser.add_argument("--lava-dl", type=Path, required=True, help="folder lava-dl was installed into (--target)")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = load_with_netx(args.net, args.lava_dl)
    if not emit(result, args.save, args.json):
        print(result)


if __name__ == "__main__":
    main()
