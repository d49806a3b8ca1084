"""Silence library chatter that says nothing to a user of ftagent."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    # bitsandbytes tries to fetch an optional CPU kernel from the Hub and logs when it
    # can't; the built-in kernel it falls back to is correct.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # ftagent never downloads
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
