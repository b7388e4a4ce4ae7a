"""Headless Chromium screenshots of a page on loopback, and a check that a PNG shows something."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest


def screenshot(url: str, png: Path, profile_dir: Path, size: str = "1280,1000") -> Path:
    """`chromium --headless --screenshot` of `url` into `png`; the browser's whole process
    group is killed if it outlives 60 s."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("needs `chromium` (see DEBIAN_TEST in the Makefile)")
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile_dir}",
            f"--screenshot={png}", f"--window-size={size}", url]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"chromium did not finish a screenshot of {url} in 60 s") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert png.exists(), f"chromium wrote no screenshot: {out.decode(errors='replace')[-2000:]}"
    return png


def png_stats(png: Path) -> tuple[int, int, int, float]:
    """(width, height, distinct colours, share of pixels that are not the background)."""
    from PIL import Image

    with Image.open(png) as im:
        rgb = im.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        background = max(colours)[1] if colours else (0, 0, 0)
        total = rgb.width * rgb.height
        ink = 1 - sum(n for n, c in colours if c == background) / total
        return rgb.width, rgb.height, len(colours), ink
