"""Zero-shot ImageNet-1k top-1 of each labeled hub model on ``imagenet-sample`` (1 image per class).

Run:  python benchmarks/measure_imagenet_top1.py
      python benchmarks/measure_imagenet_top1.py --smoke   # toy colour hub: top-1 on its 6 colour classes

Reads the image embeddings from the models' labels (labeling already ran every image through every model),
so it costs one text encoding of 1,000 class prompts per model. The numbers go into ``ModelSpec.imagenet_top1``
of the offline hub (INB ranks by them). ``--smoke`` runs the same computation on a throw-away hub of the toy
colour models labeled on synthetic swatches (class = the swatch's WordNet colour synset): seconds, no data.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import make_toy_hub  # noqa: E402


def zero_shot_top1(hub, source: str, wnids: list[str], names: list[str]) -> dict[str, float]:
    """Top-1 of every labeled model on the graph's images of sample set ``source`` (``source/<wnid>/file``),
    classes ``wnids`` prompted by ``names``, from the stored image labels."""
    from vlmhub.concepts.graph import current_graph
    from vlmhub.labeling import LabelStore

    g = current_graph(hub.settings)
    ids = [i for i in g.image_ids() if i.startswith(source + "/")]
    truth = np.array([wnids.index(i.split("/")[1]) for i in ids])
    store = LabelStore(hub.settings)
    out = {}
    for mid in hub.labeled_model_ids():
        img = store.label(mid).images.get(ids)
        cls = hub.model(mid).class_embeddings(names)
        out[mid] = float(np.mean((img @ cls.T).argmax(1) == truth))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="toy colour hub, 6 classes (seconds, no data)")
    args = ap.parse_args(argv)
    if args.smoke:
        from vlmhub.concepts.wordnet import get_wordnet, synset_from_wnid, synset_name

        tmp = Path(tempfile.mkdtemp(prefix="vlmhub-bench-top1-"))
        try:
            hub, _ = make_toy_hub(tmp)
            wn = get_wordnet(hub.settings)
            wnids = sorted(p.name for p in (tmp / "data" / "color-samples").iterdir() if p.is_dir())
            names = [synset_name(synset_from_wnid(wn, w)) for w in wnids]
            res = zero_shot_top1(hub, "color-samples", wnids, names)
            print(f"SMOKE: toy colour hub, {len(wnids)} classes ({', '.join(names)})")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        from vlmhub.hub import Hub
        from vlmhub.models.offline import imagenet_class_texts, imagenet_wnids

        hub = Hub()
        names = list(imagenet_class_texts("name", str(hub.settings.wordnet_dir)))
        res = zero_shot_top1(hub, "imagenet-sample", list(imagenet_wnids()), names)
    for mid, top1 in res.items():
        print(f"{mid}\t{top1:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
