"""The shop SDK is what a shop's Python backend installs: it needs neither
PyTorch, FAISS nor matplotlib (the model's side, the `cpu`/`gpu` extras)."""

from __future__ import annotations

import subprocess
import sys

BLOCKED = """
import sys
for name in ("torch", "faiss", "matplotlib"):
    sys.modules[name] = None  # an import of it now fails, as where it is not installed
from streamrec.shop import ShopProducer, read_events, send_traffic
from streamrec.cli import run
print("imported")
"""


def test_the_shop_sdk_and_the_command_import_without_the_models_libraries():
    finished = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0 and finished.stdout.strip() == "imported", finished.stderr[-2000:]
