"""The labeling job: embed every graph image and caption with every model, incrementally and resumably.

Models sharing a trunk run it once per image. Embeddings are appended to each model's label shard by shard
(every ``batch_size`` images), so a killed job resumes where it stopped; a model is marked complete for a
graph version only when all its rows exist. Adding images or nodes later embeds only the new rows.

A run holds a per-model lock (``<home>/labels/<model id>/.labeling.lock``) while it labels that model, so a
second concurrent run waits, then finds the rows stored and skips them: each row is computed and stored once.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from ..concepts.graph import SemanticGraph
from ..models.base import ZeroShotModel
from ..models.runner import group_by_trunk, _prep_batch
from ..settings import Settings, get_settings
from ..storage.atomic import file_lock
from .labels import LabelStore, ModelLabel, caption_key

__all__ = ["label_models", "LabelReport", "LABELING_LOCK", "ImageBackend", "TextBackend", "CAPTION_CHUNK", "embed_chunk",
           "local_image_embeddings", "local_caption_embeddings"]

#: ``backend(group, chunks)`` yields ``(chunk index, {model id: embeddings of the chunk's images})`` for every
#: chunk of image refs, in any order: the models of ``group`` share one trunk (run once per image)
ImageBackend = Callable[[Sequence[ZeroShotModel], Sequence[Sequence[tuple]]], Iterator[tuple[int, dict[str, np.ndarray]]]]

#: ``backend(models, chunks)`` yields ``(chunk index, embeddings)`` for every caption chunk, in any order: chunk
#: ``(j, captions)`` is a list of captions of ``models[j]`` (at most :data:`CAPTION_CHUNK`), embedded in one
#: ``models[j].encode_text(captions)`` call
TextBackend = Callable[[Sequence[ZeroShotModel], Sequence[tuple[int, Sequence[str]]]], Iterator[tuple[int, np.ndarray]]]

#: captions per text forward (and per stored caption shard)
CAPTION_CHUNK = 256


def embed_chunk(group: Sequence[ZeroShotModel], chunk: Sequence[tuple]) -> dict[str, np.ndarray]:
    """Every model's embeddings of one chunk of image refs: decode, trunk once, each model's projection."""
    feats = group[0].image_features(_prep_batch(group[0], chunk))
    return {m.id: np.asarray(m.project_image(feats)) for m in group}


def local_image_embeddings(group: Sequence[ZeroShotModel], chunks: Sequence[Sequence[tuple]]
                           ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """The in-process :data:`ImageBackend`: chunks in order, the next chunk decoded while the trunk runs."""
    import concurrent.futures as cf

    if not chunks:
        return
    with cf.ThreadPoolExecutor(max_workers=1) as pool:
        fut = pool.submit(_prep_batch, group[0], chunks[0])
        for ci, chunk in enumerate(chunks):
            pixels = fut.result()
            if ci + 1 < len(chunks):
                fut = pool.submit(_prep_batch, group[0], chunks[ci + 1])
            feats = group[0].image_features(pixels)
            yield ci, {m.id: np.asarray(m.project_image(feats)) for m in group}


def local_caption_embeddings(models: Sequence[ZeroShotModel], chunks: Sequence[tuple[int, Sequence[str]]]
                             ) -> Iterator[tuple[int, np.ndarray]]:
    """The in-process :data:`TextBackend`: every chunk in order, one ``encode_text`` call each."""
    for ci, (j, captions) in enumerate(chunks):
        yield ci, np.asarray(models[j].encode_text(list(captions)))


#: name of the per-model lock file a labeling run holds (inside the model's label folder)
LABELING_LOCK = ".labeling.lock"


def _clear_label(lab: ModelLabel) -> None:
    """Delete a stored label (``--force``) but keep the lock file, which other runs may be waiting on."""
    import shutil

    if not lab.directory.exists():
        return
    for entry in lab.directory.iterdir():
        if entry.name == LABELING_LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


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
    image_backend: ImageBackend | None = None,
    text_backend: TextBackend | None = None,
) -> LabelReport:
    """Label ``models`` on ``graph`` (Eq. 2-4), skipping rows that already exist. Returns a report.

    ``image_backend`` computes the image embeddings of each chunk of ``batch_size`` images (default: in this
    process, :func:`local_image_embeddings`; :mod:`vlmhub.labeling.ray_backend` runs them on Ray);
    ``text_backend`` likewise the caption embeddings of each chunk of :data:`CAPTION_CHUNK` captions of one
    model (default :func:`local_caption_embeddings`). Every chunk is stored as soon as it arrives, so an
    interrupted run resumes at chunk granularity. The progress bars count stored caption chunks and shards.
    """
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
    want = {r.value for r in rend}

    def done(lab: ModelLabel) -> bool:
        return lab.is_complete(graph.version) and want <= set(lab.renditions(graph.version))

    todo_models = []
    for m in models:
        lab = store.label(m.id)
        if not force:
            lab.check_spec(m.spec)
            if done(lab):
                report.skipped.append(m.id)
                continue
        todo_models.append(m)
    for key, group in group_by_trunk(todo_models).items():
        with contextlib.ExitStack() as locks:
            # one run at a time per model (sorted: no lock-order deadlock); what another run finished meanwhile is skipped
            for m in sorted(group, key=lambda m: m.id):
                locks.enter_context(file_lock(store.label(m.id).directory / LABELING_LOCK))
            live = []
            for m in group:
                lab = store.label(m.id)
                if force:
                    _clear_label(lab)
                else:
                    lab.check_spec(m.spec)
                    if done(lab):
                        report.skipped.append(m.id)
                        continue
                live.append(m)
            group = live
            if not group:
                continue
            t0 = time.perf_counter()
            # captions (text tower): each model's missing captions in chunks of CAPTION_CHUNK
            keys = [caption_key(c) for c in captions]
            cap_chunks: list[tuple[int, list[str]]] = []
            for j, m in enumerate(group):
                missing = set(store.label(m.id).captions.missing(keys))
                todo = [c for c in dict.fromkeys(captions) if caption_key(c) in missing]
                cap_chunks += [(j, todo[i : i + CAPTION_CHUNK]) for i in range(0, len(todo), CAPTION_CHUNK)]
                report.new_captions[m.id] = len(todo)
            n_caps = sum(len(c) for _, c in cap_chunks)
            bar = tqdm(total=len(cap_chunks), desc=f"captions {key} ({len(group)} model{'s' if len(group) > 1 else ''}, "
                       f"{n_caps} captions)", unit="chunk", disable=not progress or not cap_chunks)
            for ci, embs in (text_backend or local_caption_embeddings)(group, cap_chunks):
                j, chunk = cap_chunks[ci]
                store.label(group[j].id).captions.append([caption_key(c) for c in chunk], embs)
                bar.update(1)
            bar.close()
            # images: the union of rows missing in any model of the group, trunk once per image
            tables = {m.id: store.label(m.id).images for m in group}
            missing_sets = {mid: set(t.missing(image_ids)) for mid, t in tables.items()}
            union = [i for i in image_ids if any(i in s for s in missing_sets.values())]
            refs = [all_refs[i] for i in union]
            chunks = [refs[i : i + batch_size] for i in range(0, len(refs), batch_size)]
            # one step per stored shard (chunk of batch_size images), whichever backend computed it
            bar = tqdm(total=len(chunks), desc=f"label {key} ({len(group)} model{'s' if len(group) > 1 else ''}, "
                       f"{len(refs)} images)", unit="shard", disable=not progress or not refs)
            for ci, embs in (image_backend or local_image_embeddings)(group, chunks):
                ids = [r[0] for r in chunks[ci]]
                for m in group:
                    rows = [j for j, i in enumerate(ids) if i in missing_sets[m.id]]
                    if rows:
                        tables[m.id].append([ids[j] for j in rows], embs[m.id][rows])
                bar.update(1)
            bar.close()
            for m in group:
                report.new_images[m.id] = len(missing_sets[m.id])
                store.label(m.id).mark_complete(m.spec, graph.version, n_images=len(base_ids), n_nodes=len(graph.nodes),
                                                renditions=sorted(set(store.label(m.id).renditions(graph.version)) | {r.value for r in rend}))
            report.seconds[key] = time.perf_counter() - t0
    return report
