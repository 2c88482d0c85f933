"""The labeler's compute seams (``image_backend``, ``text_backend``): any backend that returns the chunks'
embeddings, in any order, stores the local labels; an interrupted caption stage resumes at chunk granularity.
Runs without Ray (tests/test_ray_labeling.py runs the same seams on Ray)."""

from __future__ import annotations

import dataclasses

import pytest
from many_captions import with_many_captions

IDS = ["toy-a", "toy-b", "toy-c"]


def _caption_bytes(settings, graph):
    from vlmhub.labeling.labels import LabelStore, caption_key

    store = LabelStore(settings)
    return {mid: store.label(mid).captions.get([caption_key(c) for c in graph.captions()]).tobytes() for mid in IDS}


def test_caption_chunks_in_any_order_store_the_local_labels(toy_hub, tmp_path):
    from vlmhub.labeling.labeler import CAPTION_CHUNK, label_models, local_caption_embeddings

    graph = with_many_captions(toy_hub.graph())
    local = dataclasses.replace(toy_hub.settings, home=tmp_path / "local")
    label_models(toy_hub.models(IDS), graph, local, progress=False)
    seen: list[tuple[str, int]] = []

    def backwards(models, chunks):  # the last chunk first
        seen.extend((models[j].id, len(c)) for j, c in chunks)
        yield from reversed(list(local_caption_embeddings(models, chunks)))

    other = dataclasses.replace(toy_hub.settings, home=tmp_path / "backwards")
    report = label_models(toy_hub.models(IDS), graph, other, progress=False, text_backend=backwards)
    n = len(graph.nodes)
    assert report.new_captions == {mid: n for mid in IDS}
    sizes = [CAPTION_CHUNK] * (n // CAPTION_CHUNK) + [n % CAPTION_CHUNK]
    assert seen == [(mid, size) for mid in IDS for size in sizes]  # each model's captions in chunks of 256
    assert _caption_bytes(other, graph) == _caption_bytes(local, graph)


def test_an_interrupted_caption_stage_resumes_at_chunk_granularity(toy_hub, tmp_path):
    from vlmhub.errors import LabelError
    from vlmhub.labeling.labeler import CAPTION_CHUNK, label_models, local_caption_embeddings
    from vlmhub.labeling.labels import LabelStore

    graph = with_many_captions(toy_hub.graph())
    local = dataclasses.replace(toy_hub.settings, home=tmp_path / "local")
    label_models(toy_hub.models(IDS), graph, local, progress=False)

    def dies_after_two(models, chunks):  # a cluster lost after two caption chunks
        for k, out in enumerate(local_caption_embeddings(models, chunks)):
            if k == 2:
                raise LabelError("the cluster went away")
            yield out

    other = dataclasses.replace(toy_hub.settings, home=tmp_path / "resumed")
    with pytest.raises(LabelError, match="went away"):
        label_models(toy_hub.models(IDS), graph, other, progress=False, text_backend=dies_after_two)
    lab = LabelStore(other).label(IDS[0])
    assert len(lab.captions) == 2 * CAPTION_CHUNK and not lab.is_complete(graph.version)  # both chunks kept
    report = label_models(toy_hub.models(IDS), graph, other, progress=False)
    n = len(graph.nodes)
    assert report.new_captions == {IDS[0]: n - 2 * CAPTION_CHUNK, IDS[1]: n, IDS[2]: n}
    assert _caption_bytes(other, graph) == _caption_bytes(local, graph)


def test_the_progress_bars_count_caption_chunks_and_shards(toy_hub, tmp_path, capsys):
    from vlmhub.labeling.labeler import label_models

    graph = with_many_captions(toy_hub.graph())
    other = dataclasses.replace(toy_hub.settings, home=tmp_path / "bars")
    label_models(toy_hub.models(IDS), graph, other, progress=True)
    err = capsys.readouterr().err
    for mid in IDS:
        assert f"captions {mid} (1 model, {len(graph.nodes)} captions)" in err
        assert f"label {mid} (1 model, {len(graph.image_ids())} images)" in err
    assert "3/3" in err and "chunk" in err and "shard" in err
