"""Text model bundles on the command line (docs/transformers.md): ``aiaas models push DIR`` reads a
bundle directory, ``aiaas models pull NAME -o DIR`` writes one back (every file sha256 checked), and
``aiaas models export-encoder`` writes the pretrained encoder with no head as an embedding bundle."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

import typer

from aiaas.cli import errors

PRETRAINED = "all-MiniLM-L6-v2"


def read_bundle(path: Path) -> tuple[bytes, dict[str, bytes]]:
    """The graph and files of a bundle directory; a bad one exits 2 with one line saying why."""
    from aiaas.registry.bundles import read_dir
    from aiaas.schemas.errors import AiaasError

    try:
        return read_dir(path)
    except AiaasError as exc:
        errors.fail(exc.reason, 2)


async def pull_files(reg: Any, mv: Any, onnx_bytes: bytes) -> dict[str, bytes]:
    """A version's bundle files (sha256 checked), or those its text model's ONNX metadata holds."""
    from aiaas.registry.bundles import from_onnx
    from aiaas.schemas.errors import AiaasError, ErrorCode

    if mv.files:
        return {f.name: await reg.load_file(mv, f.name) for f in mv.files}
    import onnx

    meta = {p.key: p.value for p in onnx.load_from_string(onnx_bytes).metadata_props}
    files = from_onnx(meta)
    if not files:
        raise AiaasError(f"{mv.name} v{mv.version} is not a text model: no bundle to write (pull it "
                         "without --bundle)", code=ErrorCode.BAD_REQUEST, model=mv.name)
    return files


def write_bundle(out: Path, mv: Any, onnx_bytes: bytes, files: dict[str, bytes]) -> str:
    """Write the bundle directory; the line saying what was written."""
    from aiaas.registry.bundles import write_dir

    write_dir(out, onnx_bytes, files)
    shas = ", ".join(f"{n} {hashlib.sha256(b).hexdigest()[:12]}" for n, b in sorted(files.items()))
    return (f"wrote bundle {out}/ ({mv.name} v{mv.version}, {mv.stage}): model.onnx {mv.sha256[:12]}, "
            f"{shas} (sha256)")


def export_encoder(
    out: Annotated[Path, typer.Option("-o", "--output", help="bundle directory to write")],
    pretrained: Annotated[str, typer.Option(help="installed pretrained model")] = PRETRAINED,
    max_length: Annotated[int, typer.Option(help="tokens per text (longer ones are truncated)")] = 256,
) -> None:
    """Write the pretrained encoder with no head as an embedding bundle (model.onnx with
    input_ids/attention_mask in, a normalised mean-pooled ``embedding`` out; tokenizer.json;
    config.json), checked against torch; register it with ``aiaas models push DIR --name NAME``."""
    from aiaas.data.pretrained import encode_texts, text_tokenizer
    from aiaas.ml.textexport import export_text, validate_text
    from aiaas.ml.transformer import TextClassifier, load_encoder
    from aiaas.registry.bundles import from_onnx, write_dir
    from aiaas.schemas.errors import AiaasError

    try:
        model = TextClassifier(load_encoder(pretrained), 1, 0, pretrained=pretrained, max_length=max_length)
        onnx_bytes = export_text(model, embedding=True)
        import numpy as np

        ids, mask = encode_texts(text_tokenizer(pretrained, max_length), ["a short text", "and a longer "
                                                                          "one, to check the padding"])
        diff = validate_text(onnx_bytes, model, np.concatenate([ids, mask], axis=1), embedding=True)
    except AiaasError as exc:
        errors.fail(exc.reason, 2)
    import onnx

    meta = {p.key: p.value for p in onnx.load_from_string(onnx_bytes).metadata_props}
    write_dir(out, onnx_bytes, from_onnx(meta))
    typer.echo(f"wrote embedding bundle {out}/ ({pretrained}, {len(onnx_bytes):,} bytes of ONNX, max abs "
               f"diff vs torch {diff:.2g})")
