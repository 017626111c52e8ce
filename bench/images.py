"""Cold build vs warm rebuild of the worker and operator images with buildah.

    .venv/bin/python bench/images.py [--driver overlay|vfs] [--keep]

Why: the test bed rebuilds the images on every run and counts on buildah's layer cache to
make that cheap; this measures how cheap. In one run, with a storage of its own in a
temporary directory under the cache (an empty layer cache, removed at the end unless
`--keep`): import the cached base rootfs (made first if there is none: not timed as a
build), build each image cold (every RUN step, pip downloads included), then rebuild it
warm (every step from the cache). Prints seconds, archive sizes and the warm/cold ratio.
`--driver vfs` measures the storage driver used where overlay is not available. Not a
test: no asserts. Needs what testbed.images needs (root, buildah, runc, debootstrap).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from testbed import images  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driver", choices=["overlay", "vfs"], default="overlay")
    parser.add_argument("--keep", action="store_true", help="keep the temporary storage")
    options = parser.parse_args()
    cache = images.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with images.locked(cache):  # the base rootfs is reused, not measured (made if absent)
        images.base_tarball(cache)
    work = Path(tempfile.mkdtemp(prefix="bench-images-", dir=cache))
    os.environ["TESTBED_NO_PULL"] = "1"  # the base comes from the cached rootfs
    tool = images.Buildah(cache, options.driver, home=work / "containers", archives=work / "a")
    rows: list[tuple[str, float, float, int]] = []
    try:
        started = time.monotonic()
        base = images.ensure_base(tool)
        base_import = time.monotonic() - started
        for spec in images.image_specs():
            cold = images.build_image(tool, spec, base)
            warm = images.build_image(tool, spec, base)
            if warm.image_id != cold.image_id:
                print(f"note: the warm rebuild of {spec.name} changed its ID", file=sys.stderr)
            rows.append((spec.name, cold.seconds, warm.seconds, cold.size))
    finally:
        tool.sweep()  # what buildah as root left outside the storage
        if options.keep:
            print(f"kept {work}")
        else:
            images.remove_tree(work)
    print(f"\nstorage driver {options.driver}; base import {base_import:.1f}s")
    print(f"{'image':<48} {'cold s':>7} {'warm s':>7} {'warm/cold':>9} {'MB':>6}")
    for name, cold_s, warm_s, size in rows:
        print(
            f"{name:<48} {cold_s:>7.1f} {warm_s:>7.1f} {warm_s / cold_s:>9.2f} {size / 1e6:>6.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
