"""Shared fixtures: where the real data lives, and small helpers.

Tests that need real data (WikiText-2, GPT-2's tokenizer files) read it from one folder:
$HW5_DATA_DIR, by default ../shared/data next to the repository. When it is missing the
test is skipped on a developer's machine but FAILS under CI=true, so CI can never pass by
silently skipping the reference checks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA_DIR = Path(os.environ.get("HW5_DATA_DIR", ROOT.parent / "shared" / "data"))
GPT2_PATTERN_TIKTOKEN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


pytest_plugins = ("gradescope_plugin",)   # points marks and --gradescope-results


def data_path(*parts: str) -> Path:
    """Path of a file under the data folder; skip (locally) or fail (CI) when it is absent."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        message = f"{path} not found: set HW5_DATA_DIR to the folder holding shared/data"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    from gpt.bpe import BPETokenizer
    return BPETokenizer.from_gpt2(data_path("gpt2", "encoder.json"), data_path("gpt2", "vocab.bpe"))


@pytest.fixture(scope="session")
def tiktoken_gpt2():
    """tiktoken's GPT-2 encoding built from the same local files (nothing is downloaded)."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    ranks = data_gym_to_mergeable_bpe_ranks(str(data_path("gpt2", "vocab.bpe")),
                                            str(data_path("gpt2", "encoder.json")))
    return tiktoken.Encoding("gpt2-local", pat_str=GPT2_PATTERN_TIKTOKEN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


@pytest.fixture(scope="session")
def wiki_valid_raw() -> str:
    return data_path("wikitext-2-raw", "wiki.valid.raw").read_text(encoding="utf-8")
