"""User-facing input errors.

Bad input (a missing mask, a corrupt image, poses with NaN, ...) must reach the user as one clear paragraph
that names the file and the fix, not as a stack trace. Library code raises :class:`MaldInputError`; when such
an error reaches the top of a command (``ns-train``, ``ns-eval``, our own CLIs), the hook installed by
:func:`install_excepthook` prints the paragraph and exits with status 1. Inside Python (tests, notebooks)
it stays an ordinary exception.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Optional, Union


class MaldInputError(ValueError):
    """Invalid user input. The message is a complete, self-contained paragraph: what, where, how to fix."""

    def __init__(self, problem: str, path: Optional[Union[str, Path]] = None, fix: Optional[str] = None):
        self.problem = problem
        self.path = None if path is None else Path(path)
        self.fix = fix
        parts = [problem.rstrip(".") + "."]
        if self.path is not None:
            parts.insert(0, f"{self.path}:")
        if fix:
            parts.append(fix.rstrip(".") + ".")
        super().__init__(" ".join(parts))


class MaldSetupError(RuntimeError):
    """A missing resource the user must provide (model weights, an optional package); same reporting as input errors."""


def format_error(err: BaseException) -> str:
    """The paragraph printed for a user-facing error."""
    # Paths stay whole (no breaks inside long words or at hyphens) so the user can copy them from the message.
    lines = textwrap.wrap(str(err), width=110, break_long_words=False, break_on_hyphens=False)
    body = "\n".join(lines) or type(err).__name__
    return f"\nmald-nerfstudio error:\n{body}\n"


def _hook(exc_type, exc, tb, _previous=sys.excepthook):
    if isinstance(exc, (MaldInputError, MaldSetupError)):
        sys.stderr.write(format_error(exc))
        sys.stderr.flush()
        return
    _previous(exc_type, exc, tb)


def install_excepthook() -> None:
    """Print our user-facing errors as a paragraph (exit status stays 1); all other exceptions are untouched."""
    if getattr(sys.excepthook, "__name__", "") != "_hook":
        sys.excepthook = _hook
