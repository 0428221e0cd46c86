"""The compiled artifact: a directory of data (JSON, safetensors, TOML, tokenizer), never pickles.

It is written atomically with :func:`stac.files.writing` (re-exported here) and is
self-contained and verified:

- ``manifest.json`` holds the sha256 of every other file; :func:`load_artifact` refuses a
  changed, missing or unexpected file (or a symbolic link), naming it. The compile time is the
  manifest's ``compile_seconds``, outside the hashed files, so that two compiles of the same
  model write byte-identical files;
- every path the artifact's JSON names resolves inside the artifact (no ``..``, no absolute
  path, no symbolic link), or it is refused naming the field;
- ``profiles/`` holds a copy of the hardware profile the artifact was compiled for and of its
  host profile (``config.json``'s ``profiles``); the runtime prices with those copies;
- ``config.json``'s ``source_weights_sha256`` is the digest of the source model's weights
  (:func:`source_digest`), which ``stac eval`` checks before using the source model;
- ``.stac-output`` is stac's marker (:data:`stac.files.MARKER`): ``--force`` replaces only a
  directory that carries it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nir

from stac import __version__
from stac.errors import StacError
from stac.files import MARKER, OWNER, check_output_dir, write_json, writing
from stac.ir import IRFormatError, load
from stac.profiles import Profile, load_profile_file

IR_FILE = "model.stac.json"  # its arrays are in model.stac.safetensors
MANIFEST = "manifest.json"
PROFILES = "profiles"
ARTIFACT_FORMAT = 2  # 2: manifest, profile copies, source weights digest
MANIFEST_VERSION = 1
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass
class Artifact:
    path: Path
    graph: nir.NIRGraph
    config: dict[str, Any]
    profile: Profile | None = None  # the copy of the profile it was compiled for
    host: Profile | None = None  # the copy of that profile's host

    @property
    def tokenizer_dir(self) -> Path:
        return inside(self.path, "tokenizer", "tokenizer")

    def tokenizer(self) -> Any:
        from stac.frontend.models import load_tokenizer

        return load_tokenizer(self.tokenizer_dir)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        raise StacError(f"{path} is not readable JSON; recompile the artifact") from None
    if not isinstance(config, dict):
        raise StacError(f"{path} must hold a JSON object; recompile the artifact")
    return config


def inside(root: Path, rel: Any, field: str) -> Path:
    """``root / rel`` for a relative path named in an artifact, refused (naming ``field``)
    unless it stays inside ``root``: no absolute path, no ``..``, no symbolic link on the way."""
    if not isinstance(rel, str) or not rel or "\0" in rel or "\\" in rel:
        raise StacError(f"{root}: field {field!r} must be a relative path, got {rel!r}")
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StacError(
            f"{root}: field {field!r} names {rel!r}, a path outside the artifact (only plain "
            "relative paths inside it are allowed)"
        )
    path = root
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise StacError(f"{root}: field {field!r} names {rel!r}, which is a symbolic link")
    if root.resolve() not in path.resolve().parents:
        raise StacError(f"{root}: field {field!r} names {rel!r}, outside the artifact")
    return path


# ----- the manifest -------------------------------------------------------------------------


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(root: Path, skip: tuple[str, ...] = (MANIFEST,)) -> list[str]:
    """Every file under ``root`` (relative, sorted) but ``skip``; a link is refused."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                raise StacError(f"{root}: {rel} is a symbolic link (an artifact holds files only)")
            if name in filenames:
                if not full.is_file():
                    raise StacError(f"{root}: {rel} is not a regular file")
                if rel not in skip:
                    out.append(rel)
    return sorted(out)


def write_manifest(root: Path, compile_seconds: float | None = None) -> dict[str, Any]:
    """Write ``manifest.json``: the sha256 of every file under ``root`` (last step of a write)."""
    manifest: dict[str, Any] = {
        "manifest_version": MANIFEST_VERSION,
        "algorithm": "sha256",
        "files": {rel: file_digest(root / rel) for rel in _files(root, (MANIFEST, OWNER))},
    }
    if compile_seconds is not None:
        manifest["compile_seconds"] = compile_seconds  # outside the hashed files
    write_json(root / MANIFEST, manifest)
    return manifest


def check_manifest(root: Path) -> None:
    """Refuse an artifact whose files differ from its manifest, naming the first that does."""
    file = root / MANIFEST
    if file.is_symlink() or not file.is_file():
        raise StacError(f"{root} has no {MANIFEST}; recompile it with this stac")
    try:
        manifest = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StacError(f"{file} is not readable JSON ({exc})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if (
        not isinstance(manifest, dict)
        or manifest.get("manifest_version") != MANIFEST_VERSION
        or not isinstance(files, dict)
        or not all(isinstance(v, str) for v in files.values())
    ):
        raise StacError(f"{file}: not a stac manifest (version {MANIFEST_VERSION} with 'files')")
    present = _files(root)
    for rel in sorted(set(files) - set(present)):
        raise StacError(f"{root}: file {rel} listed in {MANIFEST} is missing")
    for rel in sorted(set(present) - set(files)):
        raise StacError(f"{root}: file {rel} is not in {MANIFEST} (an unexpected file)")
    for rel in present:
        if file_digest(root / rel) != files[rel]:
            raise StacError(f"{root}: file {rel} was changed since it was written (sha256 differs)")


# ----- profiles and the source model ----------------------------------------------------------


def copy_profiles(root: Path, profile: Profile, host: Profile) -> dict[str, str]:
    """Copy the compiled-for profile and its host into ``root/profiles``; return the paths for
    ``config.json``'s ``profiles``. The host copy is named by the chip's ``host`` reference so
    that it is found beside the chip copy (:func:`stac.profiles.host_profile`)."""
    chip_name = profile.name if _SAFE_NAME.fullmatch(profile.name) else "chip"
    host_name = str(profile.host)
    if not _SAFE_NAME.fullmatch(host_name) or host_name == chip_name:
        raise StacError(f"profile {profile.name}: its field 'host' {host_name!r} is not a name")
    (root / PROFILES).mkdir()
    paths = {"chip": f"{PROFILES}/{chip_name}.toml", "host": f"{PROFILES}/{host_name}.toml"}
    (root / paths["chip"]).write_bytes(profile.path.read_bytes())
    (root / paths["host"]).write_bytes(host.path.read_bytes())
    return paths


def _profiles(root: Path, config: dict[str, Any]) -> tuple[Profile, Profile]:
    paths = config.get("profiles")
    if not isinstance(paths, dict):
        raise StacError(f"{root}/config.json: field 'profiles' is missing or not a table")
    chip = load_profile_file(inside(root, paths.get("chip"), "profiles.chip"))
    host = load_profile_file(inside(root, paths.get("host"), "profiles.host"))
    if chip.host != host.name and Path(paths["host"]).stem != chip.host:
        raise StacError(
            f"{root}: the profile copy {paths['chip']} names host {chip.host!r}, but the host "
            f"copy is {host.name!r}"
        )
    return chip, host


def source_digest(model: Any) -> str:
    """sha256 over a torch model's weights (names, dtypes, shapes, bytes; sorted by name):
    the same for the same weights whatever the file format they were read from."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{list(t.shape)}\n".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def check_source(config: dict[str, Any], model: Any, source: str) -> None:
    """Refuse a source model whose weights are not the ones the artifact was compiled from."""
    recorded = config.get("source_weights_sha256")
    if not isinstance(recorded, str):
        raise StacError("config.json records no source_weights_sha256; recompile the artifact")
    found = source_digest(model)
    if found != recorded:
        raise StacError(
            f"source model {source!r} has weights sha256 {found[:16]}..., but the artifact was "
            f"compiled from weights sha256 {recorded[:16]}...: not the model it came from"
        )


# ----- loading ------------------------------------------------------------------------------


def _config(path: Path) -> dict[str, Any]:
    config_path = path / "config.json"
    if config_path.is_symlink() or not config_path.is_file():
        raise StacError(f"{path} is not a stac artifact (no config.json)")
    return _read_config(config_path)


def load_artifact(path: str | Path, verify: bool = True) -> Artifact:
    """Read an artifact; refuse one written by another artifact format, one whose files differ
    from its manifest (``verify``), or one naming a path outside itself."""
    path = Path(path)
    if not path.is_dir():
        raise StacError(f"{path} is not a stac artifact (not a directory)")
    config = _config(path)
    if config.get("artifact_format") != ARTIFACT_FORMAT:
        raise StacError(
            f"{path} was written by stac {config.get('stac_version', '?')} in artifact format "
            f"{config.get('artifact_format')}; this stac ({__version__}) reads format "
            f"{ARTIFACT_FORMAT}: recompile it"
        )
    if verify:
        check_manifest(path)
    if not (path / MARKER).is_file():
        raise StacError(f"{path} has no {MARKER}: it was not written by stac")
    ir_file = inside(path, config.get("ir_file", IR_FILE), "ir_file")
    try:
        graph = load(ir_file)
    except IRFormatError as exc:
        raise StacError(str(exc)) from None
    chip, host = _profiles(path, config)
    return Artifact(path, graph, config, chip, host)


def artifact_profile_names(path: str | Path) -> list[str]:
    """The names of the profiles an artifact carries (read from its files, without checks)."""
    try:
        return [p.name for p in _profiles(Path(path), _config(Path(path)))]
    except StacError:
        return []


__all__ = [
    "ARTIFACT_FORMAT",
    "IR_FILE",
    "MANIFEST",
    "Artifact",
    "artifact_profile_names",
    "check_manifest",
    "check_output_dir",
    "check_source",
    "copy_profiles",
    "inside",
    "load_artifact",
    "source_digest",
    "write_json",
    "write_manifest",
    "writing",
]
