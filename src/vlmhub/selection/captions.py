"""Captions of a task's classes (the ``D_T`` of MLL Section 4.3), produced offline.

Sources (``CaptionSource``), combined in the order given:

* ``user``     captions the task file provides (e.g. MLL's released GPT captions);
* ``template`` ``"a {domain} of a {class}, for {task}."`` — always available;
* ``wordnet``  ``"{class}, which is {gloss}"`` when the class name is a WordNet noun. Among the senses of an
               ambiguous name, the one whose gloss is closest (text embedding) to the template caption wins,
               so the domain disambiguates ("crane" in "bird photograph" vs "construction site photograph");
* ``llm``      an OpenAI-compatible chat endpoint with the paper's prompt, only when configured
               (``VLMHUB_LLM_URL``, ``VLMHUB_LLM_MODEL``, optional ``VLMHUB_LLM_KEY``); never required.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from typing import Literal, Sequence

import numpy as np

from ..errors import ConfigError
from ..tasks import Task

__all__ = ["CaptionSource", "class_captions", "wordnet_synset_for", "DEFAULT_SOURCES"]

CaptionSource = Literal["user", "template", "wordnet", "llm"]
DEFAULT_SOURCES: tuple[CaptionSource, ...] = ("user", "template", "wordnet")


def _template(task: Task, cls: str) -> str:
    return f"a {task.domain} of a {cls}, for {task.task}."


def _lookup_names(cls: str) -> list[str]:
    base = cls.strip().lower()
    cands = [base, re.sub(r"[^a-z0-9 ]+", " ", base).strip()]
    out = []
    for c in cands:
        c = re.sub(r"\s+", "_", c)
        if c and c not in out:
            out.append(c)
    return out


def wordnet_synset_for(cls: str, context: str, wn, embedder=None):
    """The noun synset a class name denotes, disambiguated by ``context`` (or ``None`` if it is no noun)."""
    senses = []
    for name in _lookup_names(cls):
        senses = wn.synsets(name, "n")
        if senses:
            break
    if not senses:
        return None
    if len(senses) == 1 or embedder is None:
        return senses[0]
    # compare the context with the definitions alone: the class name they all share would only add noise
    e = embedder.encode([context] + [s.definition() for s in senses])
    sims = e[1:] @ e[0]
    # prefer frequent senses slightly: WordNet lists senses by frequency
    sims = sims - 0.01 * np.arange(len(senses))
    return senses[int(np.argmax(sims))]


def _llm_captions(task: Task, cls: str, n: int = 3) -> list[str]:
    url = os.environ.get("VLMHUB_LLM_URL")
    model = os.environ.get("VLMHUB_LLM_MODEL")
    if not url or not model:
        raise ConfigError("caption source 'llm' needs VLMHUB_LLM_URL and VLMHUB_LLM_MODEL (an OpenAI-compatible endpoint).")
    prompt = (
        f"Generate long detailed caption for the {task.domain} of {cls} in the {task.task}. "
        f"e.g., \"The {task.domain} of {cls}, which is ...\". Generate long caption for {cls} within 50 words."
    )
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}], "n": n, "temperature": 0.7}).encode()
    req = urllib.request.Request(url.rstrip("/") + "/chat/completions", data=body, headers={"Content-Type": "application/json"})
    if os.environ.get("VLMHUB_LLM_KEY"):
        req.add_header("Authorization", f"Bearer {os.environ['VLMHUB_LLM_KEY']}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            data = json.loads(resp.read())
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"the caption endpoint {url} failed ({exc}). Check VLMHUB_LLM_URL or drop the 'llm' source.") from None
    return [c["message"]["content"].strip() for c in data.get("choices", []) if c.get("message", {}).get("content")]


def class_captions(
    task: Task,
    *,
    sources: Sequence[CaptionSource] = DEFAULT_SOURCES,
    wordnet=None,
    embedder=None,
) -> list[list[str]]:
    """One list of captions per class of ``task`` (never empty: the template always applies)."""
    unknown = [s for s in sources if s not in ("user", "template", "wordnet", "llm")]
    if unknown:
        raise ConfigError(f"unknown caption source(s) {unknown}. Use any of: user, template, wordnet, llm.")
    out: list[list[str]] = []
    for cls in task.classes:
        caps: list[str] = []
        for src in sources:
            if src == "user":
                caps.extend(task.captions.get(cls, ()))
            elif src == "template":
                caps.append(_template(task, cls))
            elif src == "wordnet" and wordnet is not None:
                s = wordnet_synset_for(cls, f"a {task.domain} of a {cls}", wordnet, embedder)
                if s is not None:
                    caps.append(f"{cls}, which is {s.definition()}")
            elif src == "llm":
                caps.extend(_llm_captions(task, cls))
        if not caps:
            caps.append(_template(task, cls))
        out.append(caps)
    return out
