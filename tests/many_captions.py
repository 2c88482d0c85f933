"""A test graph with several caption chunks per model (shared by the labeler and Ray labeling tests)."""

from __future__ import annotations

import dataclasses


def with_many_captions(graph, n: int = 600):
    """``graph`` plus ``n`` image-less nodes whose captions name the toy colours: more than two caption chunks
    per model (``labeler.CAPTION_CHUNK`` = 256)."""
    from vlmhub.concepts.graph import Node
    from vlmhub.labeling.labeler import CAPTION_CHUNK
    from vlmhub.models.toy import COLORS

    assert n > 2 * CAPTION_CHUNK
    extra = tuple(Node(f"x{k:05d}", f"extra {k}", f"a {COLORS[k % len(COLORS)]} thing, concept number {k}", (), (), False)
                  for k in range(n))
    return dataclasses.replace(graph, nodes=graph.nodes + extra)
