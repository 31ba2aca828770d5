"""User-facing input errors.

Bad input (a missing mask, a corrupt image, poses with NaN, ...) must reach the user as one clear paragraph
that names the file and the fix, not as a stack trace. Library code raises :class:`MaldInputError`; when such
an error reaches the top of a command (``ns-train``, ``ns-eval``, our own CLIs), the hook installed by
:func:`install_run_hooks` prints the paragraph and exits with status 1. The hooks are installed where one of our
commands or methods starts (its entry point, the trainer, the pipeline, the data parsers), never on import, so
other methods' ``ns-*`` commands run as nerfstudio made them. Inside Python (tests, notebooks)
it stays an ordinary exception. The hook also turns a checkpoint that nerfstudio's own loaders (``ns-eval``,
``ns-viewer``, ``ns-render``) cannot decode, and a checkpoint folder they cannot list (empty, or holding other
files), into the same kind of paragraph, naming the file or folder.
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


def _shorten(text: str, width: int) -> str:
    """``text`` on one line, cut at a word boundary to at most ``width`` characters (with "..." when cut)."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[: width - 4]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + " ..."


def checkpoint_folder_problem(folder: Path) -> Optional[MaldInputError]:
    """The paragraph for a run's checkpoint folder that nerfstudio's loaders (``eval_load_checkpoint``) cannot list,
    or None when they can: it must exist and hold checkpoints only (nerfstudio reads every name in it as a step)."""
    folder = Path(folder)
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    checkpoints = [n for n in names if n.startswith("step-") and n.endswith(".ckpt") and n[5:-5].isdigit()]
    others = [n for n in names if n not in checkpoints]
    if checkpoints and not others:
        return None
    if checkpoints:
        return MaldInputError(
            f"this run's checkpoint folder holds {len(others)} file(s) that are not checkpoints "
            f"({', '.join(others[:5])}), and nerfstudio's loader reads every name in it as a step number",
            folder,
            "move those files out of the folder",
        )
    held = f"only {', '.join(others[:5])}" if others else ("it is empty" if folder.is_dir() else "it does not exist")
    return MaldInputError(
        f"this run's checkpoint folder holds no step-*.ckpt checkpoint ({held}): the run stopped before its first "
        "save, or its checkpoints were moved",
        folder,
        "put the checkpoints back, or train the run again (ns-train saves one every --steps-per-save steps and at "
        "the end)",
    )


def damaged_checkpoint_error(path: Path, err: BaseException) -> MaldInputError:
    """The paragraph for a checkpoint that cannot be loaded."""
    reason = _shorten(str(err), 300)
    return MaldInputError(
        f"this checkpoint cannot be loaded ({type(err).__name__}: {reason}); the file is damaged or incomplete, "
        "for example written by a run killed during a save before mald-nerfstudio saved atomically, or copied "
        "only in part",
        path,
        "delete or move it: resuming and ns-eval then use the newest remaining checkpoint in its folder (or pass "
        "another with --load-step / --load-checkpoint)",
    )


def _unreadable_checkpoint(exc: BaseException, tb) -> Optional[Path]:
    """The checkpoint nerfstudio's loaders (``ns-eval``, ``ns-viewer``, ``ns-render``) failed to decode, if that
    is what ``exc`` is: raised inside ``torch.load`` called from a frame whose ``load_path`` names the file."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for caller, callee in zip(frames, frames[1:]):
        path = caller.f_locals.get("load_path")
        if path is not None and str(path).endswith(".ckpt") and callee.f_code.co_name == "load" and (
            "torch" in callee.f_code.co_filename and "serialization" in callee.f_code.co_filename
        ):
            return Path(path)
    return None


def _unlistable_checkpoint_folder(exc: BaseException, tb) -> Optional[Path]:
    """The checkpoint folder nerfstudio's ``eval_load_checkpoint`` (``ns-eval``, ``ns-viewer``, ``ns-render``) failed
    to list, if that is what ``exc`` is: an ``IndexError`` (no files) or a ``ValueError`` (a name that is not a step)
    raised in that function (or the generator in it that parses the names)."""
    if not isinstance(exc, (IndexError, ValueError)):
        return None
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for index, frame in enumerate(frames):
        code = frame.f_code
        if code.co_name == "eval_load_checkpoint" and "nerfstudio" in code.co_filename and all(
            inner.f_code.co_name == "<genexpr>" and inner.f_code.co_filename == code.co_filename
            for inner in frames[index + 1 :]
        ):
            load_dir = getattr(frame.f_locals.get("config"), "load_dir", None)
            return None if load_dir is None else Path(load_dir)
    return None


def _hook(exc_type, exc, tb, _previous=sys.excepthook):
    if isinstance(exc, (MaldInputError, MaldSetupError)):
        sys.stderr.write(format_error(exc))
        sys.stderr.flush()
        return
    checkpoint = _unreadable_checkpoint(exc, tb) if isinstance(exc, Exception) else None
    if checkpoint is not None:
        sys.stderr.write(format_error(damaged_checkpoint_error(checkpoint, exc)))
        sys.stderr.flush()
        return
    folder = _unlistable_checkpoint_folder(exc, tb)
    problem = checkpoint_folder_problem(folder) if folder is not None else None
    if problem is not None:
        sys.stderr.write(format_error(problem))
        sys.stderr.flush()
        return
    _previous(exc_type, exc, tb)


def install_excepthook() -> None:
    """Print our user-facing errors as a paragraph (exit status stays 1); all other exceptions are untouched."""
    if getattr(sys.excepthook, "__name__", "") != "_hook":
        sys.excepthook = _hook


def install_run_hooks() -> None:
    """What one of our commands or methods installs when it starts: the paragraph for our errors
    (:func:`install_excepthook`) and the numpy scalars nerfstudio's checkpoints hold on torch's safe loader
    (:func:`~mald_nerfstudio.checkpoint_compat.allow_numpy_scalars_in_checkpoints`). Idempotent."""
    from mald_nerfstudio.checkpoint_compat import allow_numpy_scalars_in_checkpoints

    install_excepthook()
    allow_numpy_scalars_in_checkpoints()
