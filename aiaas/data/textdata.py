"""Labelled text that installs offline: Debian package descriptions labelled by their Section.

Every Debian machine has them: ``apt-cache dumpavail`` (the package lists, ~60k packages when
``apt-get update`` has run) or, failing that, ``/var/lib/dpkg/status`` (the installed ones). A text is
a package's one-line description; its label is its Section (``contrib/games`` counts as ``games``).
Identical descriptions are kept once (``foo`` and ``foo-dbg`` often share one), so no text sits on
both sides of the split. Rows are chosen and split by a stable hash of the package name
(``per_class`` per section, the lowest hashes; a row is a test row when its hash says so), so the
same lists give the same data on every machine and run.

Texts are tokenized here, at push time, with the pretrained model's Rust tokenizer: a row of ``x``
is ``input_ids`` then ``attention_mask`` (int64, ``max_length`` each, right-padded), which is what
the ``transformer-classifier`` model reads (docs/transformers.md).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from aiaas.data.pretrained import encode_texts, text_tokenizer
from aiaas.schemas.errors import AiaasError, ErrorCode
from aiaas.schemas.jobs import DataSpec

DPKG_STATUS = Path("/var/lib/dpkg/status")


@dataclass(frozen=True, slots=True)
class TextSplit:
    """Texts and label indices of both splits; ``labels[i]`` names label index i."""

    train_texts: list[str]
    y_train: np.ndarray
    test_texts: list[str]
    y_test: np.ndarray
    labels: list[str]


@cache
def machine_packages() -> dict[str, tuple[str, str]]:
    """``packages`` of this machine's lists, read once per process (apt-cache takes seconds)."""
    return packages(_listing())


def _listing() -> str:
    """The package stanzas: apt's lists when there are any, else dpkg's installed packages."""
    if shutil.which("apt-cache"):
        out = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, check=False,
                             timeout=120)
        if out.returncode == 0 and out.stdout.count("\nPackage: ") > 1000:
            return out.stdout
    return DPKG_STATUS.read_text(errors="replace") if DPKG_STATUS.is_file() else ""


def packages(listing: str) -> dict[str, tuple[str, str]]:
    """package -> (section, description) from deb822 stanzas (the first stanza of a name wins)."""
    found: dict[str, tuple[str, str]] = {}
    for stanza in listing.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(": ")
            if sep and not line.startswith((" ", "\t")):
                fields[key] = value.strip()
        name, section, text = fields.get("Package"), fields.get("Section"), fields.get("Description")
        if name and section and text and name not in found:
            found[name] = (section.rsplit("/", 1)[-1], text)
    return found


def _hash(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def debian_split(data: DataSpec, listing: str | None = None) -> TextSplit:
    """``per_class`` texts of each section in ``data.text.sections`` (label i = sections[i])."""
    spec = data.text
    pkgs = machine_packages() if listing is None else packages(listing)
    rows: list[tuple[str, int, bool]] = []
    for label, section in enumerate(spec.sections):
        seen: set[str] = set()
        mine = sorted((n for n, (s, _) in pkgs.items() if s == section), key=_hash)
        for name in mine:
            text = pkgs[name][1]
            if text.lower() in seen:
                continue
            seen.add(text.lower())
            is_test = (_hash("split:" + name) % 10_000) < data.test_fraction * 10_000
            rows.append((text, label, is_test))
            if len(seen) >= spec.per_class:
                break
        if len(seen) < 2:
            raise AiaasError(f"too few Debian packages in section {section!r} ({len(seen)}); is "
                             "apt-get update needed?", code=ErrorCode.BAD_REQUEST,
                             field="data.text.sections", section=section, found=len(seen))
    train = [(t, y) for t, y, test in rows if not test]
    test = [(t, y) for t, y, test in rows if test]
    return TextSplit([t for t, _ in train], np.asarray([y for _, y in train], np.int64),
                     [t for t, _ in test], np.asarray([y for _, y in test], np.int64), list(spec.sections))


def token_rows(data: DataSpec, texts: list[str]) -> np.ndarray:
    """int64 [len(texts), 2 * max_length]: input_ids then attention_mask."""
    tok = text_tokenizer(data.text.tokenizer, data.text.max_length)
    ids, mask = encode_texts(tok, texts, data.text.max_length)
    return np.concatenate([ids, mask], axis=1)
