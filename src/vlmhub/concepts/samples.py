"""Concept-sample sets: ImageFolders whose class folders are WordNet noun ids (``n01440764``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..imaging import IMAGE_EXTENSIONS

__all__ = ["ConceptSampleSet", "scan_sample_set", "resolve_sample_set", "DEFAULT_SAMPLE_SETS"]

#: used by ``vlmhub label`` when no sets are named: every ImageNet class once, ImageNette, and renditions
DEFAULT_SAMPLE_SETS = ("imagenet-sample", "imagenette-val", "shape-renditions")


@dataclass(frozen=True)
class ConceptSampleSet:
    """One scanned sample set: ``images[wnid]`` lists ``(image_id, path)`` sorted by id.

    Image ids are ``"<set name>/<wnid>/<file name>"``: stable wherever the data folder lives.
    """

    name: str
    root: Path
    images: dict[str, tuple[tuple[str, Path], ...]]

    @property
    def n_images(self) -> int:
        return sum(len(v) for v in self.images.values())


def scan_sample_set(root: str | Path, max_per_concept: int | None = None) -> ConceptSampleSet:
    """Scan an ImageFolder of WordNet-id class folders (deterministic order; at most ``max_per_concept`` each)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"concept-sample folder not found: {root}. Pass an existing folder of <wnid>/<image> files.")
    images: dict[str, tuple[tuple[str, Path], ...]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        name = d.name
        if not (len(name) == 9 and name[0] == "n" and name[1:].isdigit()):
            raise DataError(
                f"{d} is not named by a WordNet noun id (like n01440764). Concept-sample folders must be wnids; "
                "put target tasks (readable class names) elsewhere."
            )
        files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        if max_per_concept is not None:
            files = files[:max_per_concept]
        if files:
            images[name] = tuple((f"{root.name}/{name}/{f.name}", f) for f in files)
    if not images:
        raise DataError(f"no images found under {root}. Expected <wnid>/<image> files.")
    return ConceptSampleSet(root.name, root, images)


def resolve_sample_set(name_or_path: str | Path, settings) -> Path:
    """The folder of a concept-sample set: ``name_or_path`` itself when it is a folder, else the registered set of
    that name found by the data lookup (a registered set that is absent is a MissingAssetError naming the fetch)."""
    p = Path(name_or_path)
    if p.is_dir():
        return p.resolve()
    from ..assets import find_image_set

    cand = find_image_set(str(name_or_path), settings)
    if cand is not None:
        return cand
    raise DataError(f"concept-sample set {name_or_path!r} not found (neither a folder nor a shared set). "
                    f"Pass a folder of <wnid>/<image> files or one of the shared sets, e.g. {', '.join(DEFAULT_SAMPLE_SETS)}.")
