"""The README's pika snippet, run as written (with the test broker's address)."""

import os
import re
from pathlib import Path

HOST = os.environ.get("WARREN_HOST", "127.0.0.1")
PORT = os.environ.get("WARREN_PORT", "5672")


def test_readme_pika_snippet(capsys):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "README.md has a python block"
    code = blocks[0].replace("localhost:5672", f"{HOST}:{PORT}")
    exec(compile(code, "README.md", "exec"), {})
    assert "received b'hello, warren'" in capsys.readouterr().out
