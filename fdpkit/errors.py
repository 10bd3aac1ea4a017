"""Exit codes and the errors a user can act on: one table for every `fdpkit` verb.

A user error or an environment fault ends a command with one line on stderr, ``fdpkit VERB: what,
which file/row/option, what to do``, and the exit code below; a traceback means a bug in fdpkit.
Modules raise `BadInput` / `EnvironmentFault` (or their own subclasses); `fdpkit.cli.main` turns
them, and plain `OSError`s such as a full disk, into that line and code.

| code | meaning |
|---|---|
| 0 | success |
| 1 | a bug in fdpkit (Python's own code for an uncaught exception; the traceback is printed) |
| 2 | bad input: an argument, option, manifest, spreadsheet, config value or cache file to correct |
| 4 | `preprocess`: finished, but some clips were skipped or failed (see preprocess_report.csv) |
| 5 | `loso`: the run folder holds a run made with another config (another --out, or --force) |
| 6 | `loso`: training diverged (the message names the fold and step) |
| 7 | environment or I/O fault: disk full, read-only folder, Ray could not start, ... |
| 130 | interrupted (Ctrl-C); re-running the same command resumes |
"""

from __future__ import annotations

import dataclasses

EXIT_OK = 0
EXIT_BUG = 1
EXIT_BAD_INPUT = 2
EXIT_INCOMPLETE = 4
EXIT_RUN_MISMATCH = 5
EXIT_DIVERGED = 6
EXIT_ENVIRONMENT = 7
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_BUG: "a bug in fdpkit (traceback printed)",
    EXIT_BAD_INPUT: "bad input: argument, option, manifest, spreadsheet, config value or cache file",
    EXIT_INCOMPLETE: "preprocess: some clips skipped or failed",
    EXIT_RUN_MISMATCH: "loso: run folder made with another config",
    EXIT_DIVERGED: "loso: training diverged",
    EXIT_ENVIRONMENT: "environment or I/O fault (disk full, read-only folder, Ray start-up)",
    EXIT_INTERRUPTED: "interrupted",
}


class FdpkitError(Exception):
    """An error the user can act on; the message is the whole story (what, where, what to do)."""

    exit_code = EXIT_BAD_INPUT


class BadInput(FdpkitError, ValueError):
    """Something the user gave (argument, file, row, value) is wrong; exit code 2."""

    exit_code = EXIT_BAD_INPUT


class EnvironmentFault(FdpkitError, RuntimeError):
    """The machine, not the input, is at fault (disk, permissions, a service that will not start);
    exit code 7."""

    exit_code = EXIT_ENVIRONMENT


def check_field_types(obj, error: type[Exception] = BadInput) -> None:
    """Each field of the dataclass `obj` holds the type its annotation names (annotations as
    strings, `from __future__ import annotations`): a bool for `bool` (`'no'` is refused, not read
    as True), an int that is no bool for `int`, a number for `float`, a string for `str`, a tuple of
    ints for `tuple[int, ...]`; `X | None` also takes None. Raises `error` naming the field."""
    wants = {"bool": ("true or false", lambda v: isinstance(v, bool)),
             "int": ("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool)),
             "float": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
             "str": ("a name", lambda v: isinstance(v, str)),
             "tuple[int, ...]": ("a list of whole numbers", lambda v: isinstance(v, tuple) and all(
                 isinstance(x, int) and not isinstance(x, bool) for x in v))}
    for f in dataclasses.fields(obj):
        kind, value = str(f.type).replace(" ", ""), getattr(obj, f.name)
        optional = kind.endswith("|None")
        kind = kind.removesuffix("|None").replace(",...", ", ...")
        if kind not in wants or (optional and value is None):
            continue
        want, ok = wants[kind]
        if not ok(value):
            raise error(f"{type(obj).__name__}: {f.name} must be {want}"
                        f"{' or null' if optional else ''}, got {value!r}")


__all__ = ["check_field_types", "EXIT_OK", "EXIT_BUG", "EXIT_BAD_INPUT", "EXIT_INCOMPLETE", "EXIT_RUN_MISMATCH",
           "EXIT_DIVERGED", "EXIT_ENVIRONMENT", "EXIT_INTERRUPTED", "EXIT_CODES", "FdpkitError",
           "BadInput", "EnvironmentFault"]
