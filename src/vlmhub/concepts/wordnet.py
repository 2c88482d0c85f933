"""WordNet 3.0 access for vlmhub (through nltk's reader, never nltk's downloader at import).

:func:`ensure_wordnet` lays out an nltk-readable copy ``<wordnet_dir>/corpora/wordnet/`` from, in order:
an existing copy; Debian's ``wordnet-base`` files (``/usr/share/wordnet``, or ``VLMHUB_WORDNET_SOURCE``); a copy
fetched into a data root by ``vlmhub data fetch wordnet`` (``<root>/nltk_data/corpora/wordnet``);
nltk's downloader where the network allows. Debian lacks the ``lexnames`` file nltk needs, so vlmhub writes
it from the 45 lexicographer file names of ``lexnames(5WN)``. The copy is built in a temporary folder and
renamed into place (atomic).
"""

from __future__ import annotations

from types import MappingProxyType

import functools
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import ConfigError, DataError
from ..settings import Settings, get_settings

__all__ = ["ensure_wordnet", "get_wordnet", "synset_from_wnid", "wnid_of", "synset_name", "synset_caption", "LEXNAMES"]

#: lexnames(5WN): number, lexicographer file, syntactic category (1 noun, 2 verb, 3 adj, 4 adv)
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant", "noun.possession",
    "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition", "verb.consumption",
    "verb.contact", "verb.creation", "verb.emotion", "verb.motion", "verb.perception", "verb.possession",
    "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)
_CATEGORY = MappingProxyType({"noun": 1, "verb": 2, "adj": 3, "adv": 4})
_REQUIRED = ("data.noun", "index.noun", "data.verb", "index.verb", "data.adj", "index.adj", "data.adv", "index.adv",
             "noun.exc", "verb.exc", "adj.exc", "adv.exc")
_DEBIAN = Path("/usr/share/wordnet")


def _lexnames_text() -> str:
    return "".join(f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def _target(settings: Settings) -> Path:
    assert settings.wordnet_dir is not None
    return settings.wordnet_dir / "corpora" / "wordnet"


def ensure_wordnet(settings: Settings | None = None) -> Path:
    """Make sure an nltk-readable WordNet 3.0 exists under ``settings.wordnet_dir``; return its folder."""
    settings = settings or get_settings()
    target = _target(settings)
    if all((target / f).is_file() for f in (*_REQUIRED, "lexnames")):
        return target
    source = Path(os.environ.get("VLMHUB_WORDNET_SOURCE", _DEBIAN))
    if not all((source / f).is_file() for f in _REQUIRED):  # a copy fetched by `vlmhub data fetch wordnet`
        for _label, root in settings.data_roots:
            cand = root / "nltk_data" / "corpora" / "wordnet"
            if all((cand / f).is_file() for f in _REQUIRED):
                source = cand
                break
    if all((source / f).is_file() for f in _REQUIRED):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-wordnet-", dir=target.parent))
        try:
            for f in sorted(source.iterdir()):
                if f.is_file():
                    shutil.copyfile(f, tmp / f.name)  # real copies, no symlinks (nltk needs files)
            if not (tmp / "lexnames").is_file():
                (tmp / "lexnames").write_text(_lexnames_text())
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target
    try:  # network fallback, where the network allows
        import nltk

        ok = nltk.download("wordnet", download_dir=str(settings.wordnet_dir), quiet=True, raise_on_error=False)
        if ok and (target.is_dir() or (target.parent / "wordnet.zip").is_file()):
            if not target.is_dir():
                import zipfile

                with zipfile.ZipFile(target.parent / "wordnet.zip") as z:
                    z.extractall(target.parent)
            return target
    except Exception:  # noqa: BLE001 - any failure falls through to the clear error below
        pass
    raise ConfigError(
        f"WordNet 3.0 was not found: no copy at {target}, no Debian files at {source}, and nltk could not download it. "
        "Install it with `sudo apt-get install wordnet-base` or `vlmhub data fetch wordnet` (or set VLMHUB_WORDNET_SOURCE to a folder with data.noun, "
        "index.noun, ...), then run the command again."
    )


def thread_safe_reader_class():
    """nltk's ``WordNetCorpusReader`` made safe to share between threads (the service's worker threads do).

    nltk reads a synset by ``seek(offset)`` + ``readline()`` on one file handle per part of speech, shared by
    every caller, and gives ``None`` (with a warning) when another thread moved the handle in between: under
    load, one ``synsets()`` call in thousands came back with a ``None`` among its senses. Every read through
    those shared handles holds one lock here; what is cached already is answered without it."""
    import threading

    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class ThreadSafeWordNetCorpusReader(WordNetCorpusReader):
        def __init__(self, *args, **kwargs):
            self._file_lock = threading.RLock()
            with self._file_lock:
                super().__init__(*args, **kwargs)

        def synset_from_pos_and_offset(self, pos, offset):
            cached = self._synset_offset_cache[pos].get(offset)
            if cached is not None:
                return cached
            with self._file_lock:
                return super().synset_from_pos_and_offset(pos, offset)

        def get_version(self):
            with self._file_lock:
                return super().get_version()

    return ThreadSafeWordNetCorpusReader


@functools.lru_cache(maxsize=4)
def _reader(path: str):
    import nltk

    data_root = str(Path(path).parent.parent)
    if data_root not in nltk.data.path:  # nltk only reads corpora below its data path
        nltk.data.path.insert(0, data_root)
    import warnings

    with warnings.catch_warnings():  # "multilingual functions are not available" (no OMW): expected
        warnings.simplefilter("ignore", UserWarning)
        return thread_safe_reader_class()(path, None)


def get_wordnet(settings: Settings | None = None):
    """An nltk ``WordNetCorpusReader`` over vlmhub's WordNet copy (set up on first use), one per copy and process,
    safe to share between threads (:func:`thread_safe_reader_class`)."""
    return _reader(str(ensure_wordnet(settings)))


def synset_from_wnid(wn, wnid: str):
    """The noun synset of an ImageNet-style id ``n01440764``."""
    if len(wnid) < 2 or wnid[0] != "n" or not wnid[1:].isdigit():
        raise DataError(f"{wnid!r} is not a WordNet noun id like 'n01440764'")
    return wn.synset_from_pos_and_offset("n", int(wnid[1:]))


def wnid_of(synset) -> str:
    return f"{synset.pos()}{synset.offset():08d}"


def synset_name(synset) -> str:
    """Readable name: the synset's first lemma with spaces."""
    return synset.lemmas()[0].name().replace("_", " ")


def synset_caption(synset) -> str:
    """The MLL node caption "{synset name}, which is {synset definition}"."""
    return f"{synset_name(synset)}, which is {synset.definition()}"
