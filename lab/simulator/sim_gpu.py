#!/usr/bin/env python3
"""The simulator as a GPU image (test equipment, stdlib only): the plain simulator, but
it refuses to start unless the GPU device its CDI injection provides is in the container
(AIRLIFT_SIM_GPU_DEVICE, a character device), and /status names that device.

So a lab host proves the hand-over: the container runs only when podman gave it the
device of the host's CDI spec for nvidia.com/gpu.
"""

from __future__ import annotations

import os
import stat
import sys

import simulator


def gpu_device(path: str) -> dict[str, object]:
    """The device as the container sees it; Refusal when it is not there."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise simulator.Refusal(
            f"no GPU: {path} is not in the container ({exc.strerror}); run it with the "
            "GPU handed over (podman --device nvidia.com/gpu=all, docker --gpus all)"
        ) from exc
    if not stat.S_ISCHR(info.st_mode):
        raise simulator.Refusal(f"no GPU: {path} is not a character device")
    return {"device": path, "present": True,
            "major": os.major(info.st_rdev), "minor": os.minor(info.st_rdev)}


class GpuHandler(simulator.Handler):
    def do_GET(self) -> None:
        if self.path.split("?", 1)[0].rstrip("/") == "/gpu":
            self.send_json(200, self.server.gpu)  # type: ignore[attr-defined]
            return
        super().do_GET()


def main(argv: list[str], environ: dict[str, str]) -> int:
    device = environ.get("AIRLIFT_SIM_GPU_DEVICE", "/dev/nvidia0")
    downloading = any(arg.lower().startswith("downloadlicense=") for arg in argv)
    if not downloading:  # staging downloads the license without a GPU
        try:
            found = gpu_device(device)
        except simulator.Refusal as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"GPU device {device} present", flush=True)
        original = simulator.SimulatorServer.__init__

        def init(server: simulator.SimulatorServer, *args: object, **kwargs: object) -> None:
            original(server, *args, **kwargs)  # type: ignore[arg-type]
            server.RequestHandlerClass = GpuHandler
            server.gpu = found  # type: ignore[attr-defined]

        simulator.SimulatorServer.__init__ = init  # type: ignore[method-assign]
    return simulator.main(argv, environ)


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.exit(main(sys.argv[1:], dict(os.environ)))
