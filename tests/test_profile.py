"""Capability profiles: a label read back as accuracy per concept and per WordNet category."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlmhub.errors import LabelError, UnknownModelError
from vlmhub.evaluation.profile import aggregate, hub_profiles, largest_differences, lexnames_of


def test_aggregate_is_the_mean_per_category_sorted_by_name():
    got = aggregate([1.0, 0.0, 0.5, 0.25], ["noun.food", "noun.animal", "noun.food", "noun.animal"])
    assert list(got) == ["noun.animal", "noun.food"]
    assert got == {"noun.animal": 0.125, "noun.food": 0.75}
    with pytest.raises(ValueError, match="one category per value"):
        aggregate([1.0], ["a", "b"])


def test_lexnames_come_from_data_noun(wordnet_dir):
    data_noun = wordnet_dir / "corpora" / "wordnet" / "data.noun"
    got = lexnames_of(["n01443537", "n07734017", "n03345487", "n12102133", "n04962784"], data_noun)
    assert got == {"n01443537": "noun.animal", "n07734017": "noun.food", "n03345487": "noun.artifact",
                   "n12102133": "noun.plant", "n04962784": "noun.attribute"}
    with pytest.raises(LabelError, match="not a synset"):
        lexnames_of(["n01443538"], data_noun)  # an offset inside a line, not a synset
    with pytest.raises(LabelError, match="noun id"):
        lexnames_of(["dog"], data_noun)


def test_profile_equals_argmax_over_concept_captions(toy_hub):
    """Independent recomputation: each concept image goes to its most similar concept caption."""
    from vlmhub.labeling import LabelStore

    hp = hub_profiles(toy_hub)
    graph = toy_hub.graph()
    nodes = [n for n in graph.nodes if n.own]
    assert hp.categories == ("noun.attribute",)  # the six colours
    store = LabelStore(toy_hub.settings)
    for prof in hp.profiles:
        ids = sorted({x for n in nodes for x in n.images})
        img, cap = store.load_embeddings(prof.model_id, ids, [n.caption for n in nodes])
        # exact similarities (float32 products are exact in float64, fsum rounds once): the blind toy models
        # tie on merged colours, and the profile breaks exact ties to the first concept, as np.argmax does
        sims = np.array([[math.fsum(float(a) * float(b) for a, b in zip(x, c)) for c in cap] for x in img])
        pred = np.argmax(sims, axis=1)
        row = {x: i for i, x in enumerate(ids)}
        want = [np.mean([pred[row[x]] == v for x in n.images]) for v, n in enumerate(nodes)]
        assert [c.accuracy for c in prof.concepts] == pytest.approx(want)
        assert prof.scores == pytest.approx((np.mean(want),))
    # every toy model is blind to two colours: no model is perfect, and they differ
    assert all(p.mean < 1.0 for p in hp.profiles)
    assert len({tuple(c.accuracy for c in p.concepts) for p in hp.profiles}) == 3
    med = hp.median()
    assert med[0] == pytest.approx(float(np.median([p.scores[0] for p in hp.profiles])))
    with pytest.raises(UnknownModelError, match="run `vlmhub label`"):
        hp.get("nope")


def test_largest_differences_rank_by_spread(toy_hub):
    hp = hub_profiles(toy_hub)
    rows = largest_differences(hp.profiles, n=3)
    assert len(rows) == 3
    spreads = [s for _, _, s in rows]
    assert spreads == sorted(spreads, reverse=True)
    for c, accs, spread in rows:
        assert accs == tuple(p.concepts[[x.id for x in p.concepts].index(c.id)].accuracy for p in hp.profiles)
        assert spread == pytest.approx(max(accs) - min(accs))
    strongest, weakest = hp.profiles[0].strongest(2), hp.profiles[0].weakest(2)
    assert strongest[0].accuracy >= strongest[1].accuracy >= weakest[1].accuracy >= weakest[0].accuracy
