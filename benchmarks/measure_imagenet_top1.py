"""Zero-shot ImageNet-1k top-1 of each labeled hub model on ``imagenet-sample`` (1 image per class).

Reads the image embeddings from the models' labels (labeling already ran every image through every model),
so it costs one text encoding of 1,000 class prompts per model. The numbers go into ``ModelSpec.imagenet_top1``
of the offline hub (INB ranks by them).
"""

from __future__ import annotations

import sys

import numpy as np


def main() -> int:
    from vlmhub.concepts.graph import current_graph
    from vlmhub.hub import Hub
    from vlmhub.labeling import LabelStore
    from vlmhub.models.offline import imagenet_class_texts, imagenet_wnids

    hub = Hub()
    g = current_graph(hub.settings)
    ids = [i for i in g.image_ids() if i.startswith("imagenet-sample/")]
    wnids = list(imagenet_wnids())
    truth = np.array([wnids.index(i.split("/")[1]) for i in ids])
    names = list(imagenet_class_texts("name", str(hub.settings.wordnet_dir)))
    store = LabelStore(hub.settings)
    for mid in hub.labeled_model_ids():
        m = hub.model(mid)
        img = store.label(mid).images.get(ids)
        cls = m.class_embeddings(names)
        top1 = float(np.mean((img @ cls.T).argmax(1) == truth))
        print(f"{mid}\t{top1:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
