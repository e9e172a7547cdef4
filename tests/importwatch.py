"""Python source for a child process that records every attempt to import some modules.

Checking `sys.modules` afterwards is not enough where TensorRT's libraries are missing: a failed
`import tensorrt` leaves nothing in sys.modules, so an eager import would go unnoticed. A
meta-path finder sees the attempt itself, whether or not the import would succeed.
"""

from __future__ import annotations


def watch_imports(statements: str, watched: tuple[str, ...]) -> str:
    """Source that runs `statements`, then prints the watched modules it tried to import
    (a sorted list) -- `[]` when none was attempted."""
    return (
        "import sys\n"
        f"WATCHED = {watched!r}\n"
        "tried = set()\n"
        "class Watch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if any(name == w or name.startswith(w + '.') for w in WATCHED):\n"
        "            tried.add(name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Watch())\n"
        f"{statements}\n"
        "print(sorted(tried))\n"
    )
