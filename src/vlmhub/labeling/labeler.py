"""The labeling job: embed every graph image and caption with every model, incrementally and resumably.

Models sharing a trunk run it once per image. Embeddings are appended to each model's label shard by shard
(every ``batch_size`` images), so a killed job resumes where it stopped; a model is marked complete for a
graph version only when all its rows exist. Adding images or nodes later embeds only the new rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..concepts.graph import SemanticGraph
from ..models.base import ZeroShotModel
from ..models.runner import group_by_trunk, _prep_batch
from ..settings import Settings, get_settings
from .labels import LabelStore, caption_key

__all__ = ["label_models", "LabelReport"]


@dataclass
class LabelReport:
    graph_version: str
    seconds: dict[str, float] = field(default_factory=dict)  # per trunk group
    new_images: dict[str, int] = field(default_factory=dict)  # per model
    new_captions: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # already complete

    def to_dict(self) -> dict:
        return {"graph_version": self.graph_version, "seconds": self.seconds, "new_images": self.new_images,
                "new_captions": self.new_captions, "already_labeled": self.skipped}


def label_models(
    models: Sequence[ZeroShotModel],
    graph: SemanticGraph,
    settings: Settings | None = None,
    *,
    batch_size: int | None = None,
    force: bool = False,
    progress: bool = True,
    renditions: Sequence[str] = ("original",),
) -> LabelReport:
    """Label ``models`` on ``graph`` (Eq. 2-4), skipping rows that already exist. Returns a report."""
    from tqdm.auto import tqdm

    settings = settings or get_settings()
    store = LabelStore(settings)
    batch_size = batch_size or settings.batch_size
    report = LabelReport(graph.version)
    from ..concepts.renditions import Rendition, rendered_id

    base_ids = graph.image_ids()
    rend = [Rendition(r) for r in renditions]
    # (label row id, path, rendition) for every image under every requested rendition
    all_refs = {rendered_id(i, r): (rendered_id(i, r), graph.image_paths[i], r.value) for r in rend for i in base_ids}
    image_ids = list(all_refs)
    captions = graph.captions()
    todo_models = []
    for m in models:
        lab = store.label(m.id)
        if force and lab.directory.exists():
            import shutil

            shutil.rmtree(lab.directory)
        lab.check_spec(m.spec)
        if lab.is_complete(graph.version) and {r.value for r in rend} <= set(lab.renditions(graph.version)):
            report.skipped.append(m.id)
        else:
            todo_models.append(m)
    for key, group in group_by_trunk(todo_models).items():
        t0 = time.perf_counter()
        # captions (text tower): per model
        for m in group:
            lab = store.label(m.id)
            keys = [caption_key(c) for c in captions]
            missing = set(lab.captions.missing(keys))
            todo = [c for c in dict.fromkeys(captions) if caption_key(c) in missing]
            for i in range(0, len(todo), 256):
                chunk = todo[i : i + 256]
                lab.captions.append([caption_key(c) for c in chunk], m.encode_text(chunk))
            report.new_captions[m.id] = len(todo)
        # images: the union of rows missing in any model of the group, trunk once per image
        tables = {m.id: store.label(m.id).images for m in group}
        missing_sets = {mid: set(t.missing(image_ids)) for mid, t in tables.items()}
        union = [i for i in image_ids if any(i in s for s in missing_sets.values())]
        refs = [all_refs[i] for i in union]
        bar = tqdm(total=len(refs), desc=f"label {key} ({len(group)} model{'s' if len(group) > 1 else ''})", unit="img", disable=not progress or not refs)
        import concurrent.futures as cf

        chunks = [refs[i : i + batch_size] for i in range(0, len(refs), batch_size)]
        if chunks:
            with cf.ThreadPoolExecutor(max_workers=1) as pool:
                fut = pool.submit(_prep_batch, group[0], chunks[0])
                for ci, chunk in enumerate(chunks):
                    pixels = fut.result()
                    if ci + 1 < len(chunks):
                        fut = pool.submit(_prep_batch, group[0], chunks[ci + 1])
                    feats = group[0].image_features(pixels)
                    ids = [r[0] for r in chunk]
                    for m in group:
                        rows = [j for j, i in enumerate(ids) if i in missing_sets[m.id]]
                        if rows:
                            emb = m.project_image(feats)
                            tables[m.id].append([ids[j] for j in rows], np.asarray(emb)[rows])
                    bar.update(len(chunk))
        bar.close()
        for m in group:
            report.new_images[m.id] = len(missing_sets[m.id])
            store.label(m.id).mark_complete(m.spec, graph.version, n_images=len(base_ids), n_nodes=len(graph.nodes),
                                            renditions=sorted(set(store.label(m.id).renditions(graph.version)) | {r.value for r in rend}))
        report.seconds[key] = time.perf_counter() - t0
    return report
