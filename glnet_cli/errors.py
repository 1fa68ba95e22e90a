"""One exception hierarchy for glnet.

The CLI turns every :class:`GlnetError` into one line on stderr and an exit
code, so messages name the file and say what to do next. Each subclass also
inherits the builtin that best describes it, so library users can catch
``OSError`` or ``ValueError`` as they would anywhere else.
"""

from __future__ import annotations

#: Exit code for mistakes the user can fix (bad file, bad option).
USER_ERROR = 2
#: Exit code for failures inside glnet.
INTERNAL_ERROR = 1
#: Exit code for a failing environment (full disk, I/O error): not the user's input.
ENVIRONMENT_ERROR = 1


class GlnetError(Exception):
    """Root of every error glnet raises on purpose."""

    exit_code = USER_ERROR


class InputError(GlnetError, ValueError):
    """An input file or option cannot be used as given."""


class RasterError(InputError):
    """A raster is missing, unreadable, or does not fit the model."""


class ModelFileError(GlnetError, OSError):
    """A model file is missing, truncated, corrupt or not a glnet model."""


class ReferenceCheckpointError(ModelFileError):
    """A reference (VITA-Group/GLNet) checkpoint does not match the expected layout."""


class PretrainedWeightsMissing(GlnetError, FileNotFoundError):
    """ImageNet weights were asked for but are not in torchvision's cache."""


class OutputExistsError(GlnetError, FileExistsError):
    """The output exists and ``--overwrite`` was not given."""


class OutputError(GlnetError, OSError):
    """The output cannot be written (missing folder, no permission)."""


class OutputWriteError(OutputError):
    """Writing the output failed (disk full, file size limit, I/O error): nothing was published."""

    exit_code = ENVIRONMENT_ERROR


class DataError(InputError):
    """Training tiles or labels are inconsistent."""


class GlnetWarning(UserWarning):
    """Recoverable problems: the run goes on, the user should know."""
