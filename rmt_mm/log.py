"""One logging call for code that runs with and without mmengine: into the runner's log where
mmengine is loaded (its ``current`` logger), else into the standard ``rmt_mm`` logger."""
import logging
import sys


def log(message: str, level: int = logging.INFO) -> None:
    if 'mmengine.logging' in sys.modules:
        from mmengine.logging import print_log
        print_log(message, logger='current', level=level)
    else:
        logging.getLogger('rmt_mm').log(level, message)
