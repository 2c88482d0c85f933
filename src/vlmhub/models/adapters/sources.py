"""Model source strings: what ``vlmhub models add SOURCE`` accepts, parsed into typed, frozen records.

========================================================  =================================================
source                                                    meaning
========================================================  =================================================
``open_clip:ViT-B-32/laion2b_s34b_b79k``                  open_clip architecture + pretrained tag
``open_clip:hf-hub:timm/ViT-B-16-SigLIP``                 open_clip model on the Hugging Face hub
``open_clip:local-dir:/path/to/dir``                      folder with ``open_clip_config.json`` + weights
``open_clip:ViT-B-32@/path/to/ckpt.pt``                   architecture + local checkpoint (state dict)
``open_clip:/path/to/Arch.json@/path/to/ckpt.pt``         custom architecture config + local checkpoint
``hf:openai/clip-vit-base-patch32``                       transformers CLIP/SigLIP model id on the hub
``hf:/path/to/saved_dir``                                 folder written by ``save_pretrained``
========================================================  =================================================

Local paths are made absolute (and ``~`` expanded) when parsed, so a persisted source never depends on the
working directory. Parsing touches no file and imports nothing heavy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union, get_args

from ...errors import ConfigError
from ._common import slugify

__all__ = [
    "AdapterName",
    "OpenClipKind",
    "OpenClipSource",
    "HFSource",
    "ModelSource",
    "parse_source",
    "ADAPTER_NAMES",
]

AdapterName = Literal["open_clip", "hf"]
ADAPTER_NAMES: tuple[str, ...] = get_args(AdapterName)

#: how an open_clip model is named: built-in arch + tag, arch + checkpoint file, HF hub repo, local folder
OpenClipKind = Literal["tag", "checkpoint", "hf-hub", "local-dir"]

_SOURCE_HELP = (
    "Use one of: open_clip:ARCH/TAG (e.g. open_clip:ViT-B-32/laion2b_s34b_b79k), open_clip:hf-hub:ORG/NAME, "
    "open_clip:local-dir:/DIR, open_clip:ARCH@/path/to/ckpt.pt, hf:ORG/NAME (e.g. hf:openai/clip-vit-base-patch32) "
    "or hf:/path/to/save_pretrained_dir."
)


def _abs(path: str) -> str:
    return str(Path(os.path.expanduser(path)).resolve())


def _looks_local(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~")) or text in (".", "..") or os.path.exists(os.path.expanduser(text))


@dataclass(frozen=True)
class OpenClipSource:
    """An open_clip model: ``arch`` is a built-in name or a ``.json`` model-config path (kind ``checkpoint``)."""

    kind: OpenClipKind
    arch: str | None = None
    pretrained: str | None = None  # tag (kind "tag") or absolute checkpoint path (kind "checkpoint")
    location: str | None = None  # hub repo id (kind "hf-hub") or absolute folder (kind "local-dir")

    adapter: Literal["open_clip"] = "open_clip"

    @property
    def source(self) -> str:
        """The canonical source string (round-trips through :func:`parse_source`)."""
        if self.kind == "tag":
            return f"open_clip:{self.arch}/{self.pretrained}"
        if self.kind == "checkpoint":
            return f"open_clip:{self.arch}@{self.pretrained}"
        return f"open_clip:{self.kind}:{self.location}"

    @property
    def model_name(self) -> str:
        """The first argument of ``open_clip.create_model_and_transforms`` (before a json arch is registered)."""
        if self.kind in ("hf-hub", "local-dir"):
            return f"{self.kind}:{self.location}"
        if self.arch and self.arch.endswith(".json"):
            return Path(self.arch).stem
        return str(self.arch)

    def default_id(self) -> str:
        if self.kind == "tag":
            return slugify(f"openclip-{self.arch}-{self.pretrained}")
        if self.kind == "checkpoint":
            return slugify(f"openclip-{self.model_name}-{Path(str(self.pretrained)).stem}")
        name = str(self.location).rstrip("/").split("/")[-1]
        return slugify(f"openclip-{name}")


@dataclass(frozen=True)
class HFSource:
    """A transformers model: a hub repo id, or an absolute folder written by ``save_pretrained``."""

    location: str
    is_local: bool

    adapter: Literal["hf"] = "hf"

    @property
    def source(self) -> str:
        return f"hf:{self.location}"

    def default_id(self) -> str:
        name = self.location.rstrip("/").split("/")[-1]
        return slugify(f"hf-{name}")


ModelSource = Union[OpenClipSource, HFSource]


def _parse_open_clip(rest: str, source: str) -> OpenClipSource:
    for schema in ("hf-hub", "local-dir"):
        if rest.startswith(schema + ":"):
            loc = rest[len(schema) + 1 :].strip()
            if not loc:
                raise ConfigError(f"model source {source!r} names no {schema} location. {_SOURCE_HELP}")
            if schema == "local-dir":
                loc = _abs(loc)
            elif loc.count("/") != 1:
                raise ConfigError(f"model source {source!r}: a hub id has the form ORG/NAME. {_SOURCE_HELP}")
            return OpenClipSource(kind=schema, location=loc)  # type: ignore[arg-type]
    if "@" in rest:
        arch, ckpt = (s.strip() for s in rest.split("@", 1))
        if not arch or not ckpt:
            raise ConfigError(f"model source {source!r} needs both an architecture and a checkpoint: ARCH@/path/to/ckpt.pt.")
        if arch.endswith(".json"):
            arch = _abs(arch)
        return OpenClipSource(kind="checkpoint", arch=arch, pretrained=_abs(ckpt))
    if "/" in rest:
        arch, tag = (s.strip() for s in rest.split("/", 1))
        if not arch or not tag or "/" in tag:
            raise ConfigError(f"model source {source!r} is not ARCH/TAG. {_SOURCE_HELP}")
        return OpenClipSource(kind="tag", arch=arch, pretrained=tag)
    raise ConfigError(
        f"model source {source!r} names an architecture but no weights; a randomly initialised model is no use "
        f"in the hub. Add a pretrained tag (open_clip:{rest}/TAG) or a checkpoint (open_clip:{rest}@/path/to/ckpt.pt)."
    )


def parse_source(source: str) -> ModelSource:
    """Parse a model source string (see the module docstring); raise :class:`ConfigError` on anything else."""
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"empty model source. {_SOURCE_HELP}")
    source = source.strip()
    prefix, sep, rest = source.partition(":")
    rest = rest.strip()
    if not sep or prefix not in ADAPTER_NAMES:
        alias = {"openclip": "open_clip", "open-clip": "open_clip", "transformers": "hf", "huggingface": "hf"}.get(prefix)
        hint = f" Did you mean '{alias}:{rest}'?" if alias and sep else ""
        raise ConfigError(
            f"unknown model source prefix in {source!r}: expected one of "
            f"{', '.join(p + ':' for p in ADAPTER_NAMES)}.{hint} {_SOURCE_HELP}"
        )
    if not rest:
        raise ConfigError(f"model source {source!r} names no model. {_SOURCE_HELP}")
    if prefix == "open_clip":
        return _parse_open_clip(rest, source)
    if _looks_local(rest):
        return HFSource(location=_abs(rest), is_local=True)
    if rest.startswith("hf-hub:"):
        rest = rest[len("hf-hub:") :]
    if rest.count("/") > 1 or rest.startswith("/"):
        raise ConfigError(f"model source {source!r}: {rest!r} is neither an existing folder nor a hub id ORG/NAME. {_SOURCE_HELP}")
    return HFSource(location=rest, is_local=False)
