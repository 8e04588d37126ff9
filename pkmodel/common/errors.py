"""The one exception type whose message is shown to users as a single sentence."""

from pathlib import Path


class PkmodelError(Exception):
    """A user-facing error: the message names the file, key or value at fault.

    The CLI prints it as one line and exits with code 2, without a traceback.
    """


def not_there(path: object, want: str = "file") -> str:
    """Why ``path`` is not the ``want`` ("file" or "folder") a command needs: ``does not exist``,
    ``is a folder, not a file`` or ``is a file, not a folder`` (for the end of an error sentence)."""

    p = Path(str(path))
    if not p.exists():
        return "does not exist"
    if want == "file":
        return "is a folder, not a file" if p.is_dir() else "is not a regular file"
    return "is a file, not a folder" if p.is_file() else "is not a folder"


def cut(text: str, limit: int = 40) -> str:
    """``text`` as an error sentence quotes a value: at most ``limit`` characters, the end of a
    longer one replaced by '...' (a 400-digit number, a pasted list)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
