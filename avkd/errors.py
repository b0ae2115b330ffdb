"""User-facing errors: each one prints as a single line naming the file, key or video."""


class AvkdError(Exception):
    """Base class: the CLI prints `error: <message>` and exits 2, no traceback."""


class ConfigError(AvkdError):
    """A sweep file is wrong (unknown key, wrong type, out-of-range value, bad YAML)."""


class DataError(AvkdError):
    """Annotations or a dataset folder are unusable."""


class MediaError(AvkdError):
    """One video cannot be decoded. Carries the video and the reason, so batches can record it and go on."""

    def __init__(self, video: str, reason: str):
        super().__init__(f"{video}: {reason}")
        self.video = str(video)
        self.reason = reason


class WeightsError(AvkdError):
    """Pretrained weights were required but are missing or unreadable."""


class StorageError(AvkdError):
    """A folder or tracking store cannot hold the sweep's output (read-only, full, locked, corrupt, unreachable).

    The message names the path (or URI) and the real cause; these are never retried."""
