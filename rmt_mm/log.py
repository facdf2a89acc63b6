"""One logging call for code that runs with and without mmengine: into the runner's log where
mmengine is loaded (its ``current`` logger), else into the standard ``rmt_mm`` logger; and
imports of mmdet/mmseg without their notes on extras nobody here uses."""
import contextlib
import io
import logging
import sys
import warnings
from typing import Iterator, Sequence, TextIO


def log(message: str, level: int = logging.INFO) -> None:
    if 'mmengine.logging' in sys.modules:
        from mmengine.logging import print_log
        print_log(message, logger='current', level=level)
    else:
        logging.getLogger('rmt_mm').log(level, message)


#: What the OneDL fork's mmdet and mmseg print or warn on import about optional extras the
#: tools do not use (the OneDL dataset adapters, faster_coco_eval's metric).
_IMPORT_NOISE = ('Could not import OneDL. Skipping OneDL datasets.',)
_IMPORT_WARNINGS = 'faster_coco_eval is not installed'


class _DropLines(io.TextIOBase):
    """A stdout that passes on everything but the given lines."""

    def __init__(self, target: TextIO, lines: Sequence[str]) -> None:
        self.target, self.lines = target, set(lines)
        self.dropped = False  # print() writes a line's text and its newline in two calls

    def write(self, text: str) -> int:
        if text == '\n' and self.dropped:
            self.dropped = False
            return len(text)
        lines = text.splitlines(keepends=True)
        kept = [line for line in lines if line.rstrip('\n') not in self.lines]
        self.dropped = len(kept) < len(lines)
        self.target.write(''.join(kept))
        return len(text)

    def flush(self) -> None:
        self.target.flush()


@contextlib.contextmanager
def quiet_codebase_import() -> Iterator[None]:
    """Import mmdet or mmseg without their notes on optional extras (see ``_IMPORT_NOISE``)."""
    with warnings.catch_warnings(), \
            contextlib.redirect_stdout(_DropLines(sys.stdout, _IMPORT_NOISE)):
        warnings.filterwarnings('ignore', _IMPORT_WARNINGS)
        yield
