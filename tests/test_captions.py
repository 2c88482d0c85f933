"""Offline captions (templates, WordNet glosses with domain disambiguation) and the optional LLM endpoint."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from vlmhub.errors import ConfigError
from vlmhub.models.text import get_text_embedder
from vlmhub.selection.captions import class_captions, wordnet_synset_for
from vlmhub.tasks import Task


@pytest.fixture
def wn(settings):
    from vlmhub.concepts.wordnet import get_wordnet

    return get_wordnet(settings)


def test_template_and_wordnet_captions(wn):
    task = Task("t", ("cat", "Speed limit (20km-h)"), domain="natural photograph")
    caps = class_captions(task, wordnet=wn)
    assert caps[0][0] == "a natural photograph of a cat, for image classification."
    assert caps[0][1].startswith("cat, which is feline mammal")
    assert len(caps[1]) == 1  # no synset for the sign: the template alone


def test_domain_picks_the_sense_of_ambiguous_names(wn):
    emb = get_text_embedder("minilm")
    bird = wordnet_synset_for("crane", "a bird photograph of a crane", wn, emb)
    machine = wordnet_synset_for("crane", "a construction machinery photograph of a crane", wn, emb)
    assert bird.name() == "crane.n.05" and machine.name() == "crane.n.04"


def test_llm_endpoint_is_optional_and_used_when_configured(wn, monkeypatch):
    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # an OpenAI-compatible chat completion, served on loopback
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen["prompt"] = body["messages"][0]["content"]
            seen["auth"] = self.headers.get("Authorization")
            out = json.dumps({"choices": [{"message": {"content": "The photo of a cat, which is a small pet."}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    try:
        task = Task("t", ("cat", "dog"), domain="pet photograph")
        with pytest.raises(ConfigError, match="VLMHUB_LLM_URL"):
            class_captions(task, sources=("llm",))
        monkeypatch.setenv("VLMHUB_LLM_URL", f"http://127.0.0.1:{server.server_port}/v1")
        monkeypatch.setenv("VLMHUB_LLM_MODEL", "test-model")
        monkeypatch.setenv("VLMHUB_LLM_KEY", "k")
        caps = class_captions(task, sources=("llm", "template"))
        assert caps[0][0] == "The photo of a cat, which is a small pet."
        assert "pet photograph of dog" in seen["prompt"] and seen["auth"] == "Bearer k"  # the last request
    finally:
        server.shutdown()


def test_the_shared_wordnet_reader_answers_threads_as_it_answers_one(settings, wn):
    """Regression: the service's threads share one WordNet reader; nltk's reads a synset by seek + readline on a
    shared file handle, so concurrent new tasks got a ``None`` sense (a 500 in one request of thousands under
    load) or a garbled line. The reader vlmhub hands out locks those reads: 8 threads resolving 600 nouns in
    different orders on a fresh reader (empty synset cache) get exactly the one-thread answers."""
    import random
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from vlmhub.concepts.wordnet import ensure_wordnet

    assert type(wn).__name__ == "ThreadSafeWordNetCorpusReader"
    names = sorted({s.lemma_names()[0] for i, s in enumerate(wn.all_synsets("n")) if i % 120 == 0})[:600]
    want = {n: [s.name() for s in wn.synsets(n, "n")] for n in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fresh = type(wn)(str(ensure_wordnet(settings)), None)  # a new reader: nothing cached yet

    def resolve(seed: int) -> dict:
        order = names[:]
        random.Random(seed).shuffle(order)
        out = {}
        for n in order:
            try:
                out[n] = [s.name() if s is not None else None for s in fresh.synsets(n, "n")]
            except Exception as exc:  # noqa: BLE001 - a garbled line: what the unlocked reader raises
                out[n] = repr(exc)
        return out

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(resolve, range(8)))
    assert len(names) == 600 and all(got == want for got in answers)
