"""MIRACL v1.0 dev (Zhang et al., 2023): 18 languages, Wikipedia passages, queries judged by native speakers.

Everything is read through ir_datasets' own record types and parsers (``MiraclDoc``, ``TsvQueries``,
``TrecQrels``, ``JsonlDocs``):

* Online, ``miracl/<lang>/dev`` and ``miracl/<lang>`` are loaded from ir_datasets, with its downloads,
  checksums and cache (``IR_DATASETS_HOME``).
* From a local folder (``--data-dir`` / ``XLIR_BENCH_DATA``), the same parsers read
  ``<dir>/miracl/<lang>/dev/topics.tsv`` and ``qrels.tsv`` (checked against the md5 ir_datasets pins for them)
  and a corpus downloaded elsewhere, ``<dir>/miracl/<lang>/corpus/docs-*.jsonl[.gz]`` (the files of the
  ``miracl/miracl-corpus`` dataset, ``miracl-corpus-v1.0-<lang>/docs-N.jsonl.gz``, or any jsonl with MIRACL's
  ``docid``, ``title``, ``text`` fields). A corpus smaller than the published one (a subset, a test fixture) is
  legal; its md5s are recorded and compared with the official files, never inferred from counts.

Passages are what the plugin protocol already knows: ``title`` and ``text`` (MIRACL's own convention joins them
as ``"title text"``, which is what :meth:`MiraclDoc.default_text` gives and what the BM25 plugin indexes).
Queries have no translations: each is its own ``group_id``. Relevance: qrels grade 1 is relevant, explicit 0s
are judged non-relevant.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from ..errors import XlirError
from .download import cache_dir, configured_data_dir, md5_of, reachable
from .records import SuiteQuery

NAME = "miracl"
LANGUAGES = ("ar", "bn", "de", "en", "es", "fa", "fi", "fr", "hi", "id", "ja", "ko", "ru", "sw", "te", "th", "yo", "zh")
# Published sizes (MIRACL paper, Table 1; the same as ir_datasets' count hints): shown by `suites`, never used to
# judge a corpus.
PUBLISHED_PASSAGES = {
    "ar": 2_061_414, "bn": 297_265, "de": 15_866_222, "en": 32_893_221, "es": 10_373_953, "fa": 2_207_172,
    "fi": 1_883_509, "fr": 14_636_953, "hi": 506_264, "id": 1_446_315, "ja": 6_953_614, "ko": 1_486_752,
    "ru": 9_543_918, "sw": 131_924, "te": 518_079, "th": 542_166, "yo": 49_043, "zh": 4_934_368,
}  # fmt: skip
PUBLISHED_DEV_QUERIES = {
    "ar": 2896, "bn": 411, "de": 305, "en": 799, "es": 648, "fa": 632, "fi": 1271, "fr": 343, "hi": 350,
    "id": 960, "ja": 860, "ko": 213, "ru": 1252, "sw": 482, "te": 828, "th": 733, "yo": 119, "zh": 393,
}  # fmt: skip
LICENSE = "Apache 2.0"
DESCRIPTION = "MIRACL v1.0 dev: 18 languages, 13,495 queries, 106M Wikipedia passages"


def parse_name(name: str) -> tuple[str, ...] | None:
    """``miracl`` -> all 18 languages, ``miracl:sw,yo`` -> those; None when ``name`` is not a MIRACL suite."""
    head, sep, tail = name.partition(":")
    if head != NAME:
        return None
    if not sep:
        return LANGUAGES
    langs = tuple(dict.fromkeys(x.strip() for x in tail.split(",") if x.strip()))
    unknown = [x for x in langs if x not in LANGUAGES]
    if not langs or unknown:
        raise XlirError(
            f"unknown MIRACL language(s) {', '.join(unknown) or '(none given)'} in {name!r}; "
            f"choose from {','.join(LANGUAGES)}, e.g. --suite miracl:sw,yo"
        )
    return tuple(x for x in LANGUAGES if x in langs)  # canonical order: one suite, one name


def suite_name(languages: tuple[str, ...]) -> str:
    return NAME if tuple(languages) == LANGUAGES else f"{NAME}:{','.join(languages)}"


@cache
def _irds_downloads() -> dict:
    """ir_datasets' pinned MIRACL files (url, md5, cache path), read from the installed package."""
    text = resources.files("ir_datasets").joinpath("etc/downloads.json").read_text()
    return json.loads(text)[NAME]


def official_md5(lang: str, what: str) -> str | None:
    entry = _irds_downloads().get(f"v1.0/{lang}/{what}")
    return entry.get("expected_md5") if entry else None


@dataclass
class Topics:
    """One language's dev queries and qrels (every judged pair, 0s included)."""

    language: str
    queries: list[SuiteQuery]
    qrels: dict[str, dict[str, int]]
    checksums: dict[str, str] = field(default_factory=dict)

    def relevant(self, query_id: str) -> list[str]:
        """Relevant passage ids of a query, sorted (the order results and runs use)."""
        return sorted(d for d, g in self.qrels.get(query_id, {}).items() if g > 0)


def _local(path: Path):
    from ir_datasets.util import LocalDownload

    return LocalDownload(path, mkdir=False)


def load_topics(lang: str, data_dir: str | os.PathLike | None = None) -> Topics:
    """Dev queries and qrels of ``lang``: from the data folder when one is configured, else from ir_datasets."""
    from ir_datasets.formats import TrecQrels, TsvQueries

    configured = configured_data_dir(data_dir) or _cached_copy(lang)
    checksums: dict[str, str] = {}
    if configured is not None:
        folder = configured / NAME / lang / "dev"
        parts = {}
        for what in ("topics", "qrels"):
            path = folder / f"{what}.tsv"
            if not path.is_file():
                raise XlirError(
                    f"missing MIRACL file {path}; copy ir_datasets' miracl/{lang}/dev {what} there "
                    f"(shared/data has all 18 languages), or unset XLIR_BENCH_DATA to let ir_datasets download it"
                )
            actual, expected = md5_of(path), official_md5(lang, f"dev/{what}")
            if expected and actual != expected:
                raise XlirError(
                    f"checksum mismatch for {path}: md5 {actual}, expected {expected} (ir_datasets' miracl/{lang}/dev "
                    f"{what}); replace it with the original file"
                )
            checksums[f"{NAME}/{lang}/dev/{what}.tsv"] = actual
            parts[what] = (
                TsvQueries(_local(path), namespace=f"{NAME}/{lang}", lang=lang)
                if what == "topics"
                else TrecQrels(_local(path), {0: "Not Relevant", 1: "Relevant"})
            )
        queries_iter, qrels_iter = parts["topics"].queries_iter, parts["qrels"].qrels_iter
    else:
        _say_at_once_if_offline(lang)
        dataset = _irds_dataset(f"{NAME}/{lang}/dev")
        queries_iter, qrels_iter = dataset.queries_iter, dataset.qrels_iter
        checksums = {f"{NAME}/{lang}/dev/{w}": official_md5(lang, f"dev/{w}") or "?" for w in ("topics", "qrels")}
    try:
        queries = [SuiteQuery(q.query_id, q.text, lang, q.query_id) for q in queries_iter()]
        qrels: dict[str, dict[str, int]] = {}
        for r in qrels_iter():
            qrels.setdefault(r.query_id, {})[r.doc_id] = int(r.relevance)
    except XlirError:
        raise
    except OSError as exc:  # no network (requests' errors are OSErrors): one line, with what to do
        raise XlirError(f"{missing_topics_message(lang)} ({type(exc).__name__})") from None
    except Exception as exc:  # noqa: BLE001 - ir_datasets' parse errors
        raise XlirError(f"could not read MIRACL {lang} dev topics/qrels: {type(exc).__name__}: {exc}") from None
    return Topics(lang, queries, qrels, checksums)


def _say_at_once_if_offline(lang: str) -> None:
    """Before ir_datasets downloads ``lang``'s dev topics and qrels: when its cache lacks them and their site is
    unreachable, one line at once instead of requests' retries (~30 s) and ir_datasets' log lines about them."""
    entries = [_irds_downloads().get(f"v1.0/{lang}/dev/{what}") or {} for what in ("topics", "qrels")]
    if all(e.get("cache_path") and (irds_home() / NAME / e["cache_path"]).is_file() for e in entries):
        return
    message = f"{missing_topics_message(lang)} (their download site is unreachable)"
    _fail_fast_if_unreachable(f"v1.0/{lang}/dev/topics", message)


def _fail_fast_if_unreachable(download_key: str, message: str) -> None:
    """Raise ``message`` at once when the site of ir_datasets' download ``download_key`` does not answer: requests'
    retries take ~30 s and end in a traceback-shaped ConnectionError that says nothing about what to do."""
    url = (_irds_downloads().get(download_key) or {}).get("url", "https://huggingface.co")
    if not reachable(url):
        raise XlirError(message)


def missing_topics_message(lang: str) -> str:
    return (
        f"no MIRACL {lang} dev topics/qrels: set XLIR_BENCH_DATA (or --data-dir) to a folder holding "
        f"miracl/{lang}/dev/topics.tsv and qrels.tsv (shared/data's layout; `xlir-bench data download --from "
        f"FOLDER` copies one into the cache), or go online so ir_datasets downloads miracl/{lang}/dev"
    )


def irds_home() -> Path:
    """ir_datasets' cache folder (``IR_DATASETS_HOME``, default ``~/.ir_datasets``): its rule, without a mkdir."""
    return Path(os.environ.get("IR_DATASETS_HOME") or Path.home() / ".ir_datasets")


def _cached_copy(lang: str) -> Path | None:
    """The user cache's data folder when ``xlir-bench data download`` put ``lang``'s dev files there."""
    folder = cache_dir() / "data"
    present = all((folder / NAME / lang / "dev" / f"{w}.tsv").is_file() for w in ("topics", "qrels"))
    return folder if present else None


def _irds_dataset(dataset_id: str):
    import ir_datasets

    try:
        return ir_datasets.load(dataset_id)
    except Exception as exc:  # noqa: BLE001
        raise XlirError(f"ir_datasets cannot load {dataset_id}: {type(exc).__name__}: {exc}") from None


def _natural(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


@dataclass
class Corpus:
    """One language's passages, in a fixed order (the order shards are cut in).

    ``files`` are local jsonl(.gz) files; None means ir_datasets' ``miracl/<lang>`` (downloaded on first use).
    """

    language: str
    files: list[Path] | None
    origin: str = "local"  # or "ir_datasets cache": ir_datasets' own copy, read (and checksummed) as files

    @property
    def source(self) -> str:
        return f"ir_datasets:{NAME}/{self.language}" if self.files is None else self.origin

    def fingerprint(self) -> dict:
        """What identifies this corpus without reading it: file paths, sizes and mtimes (or the dataset id)."""
        if self.files is None:
            import ir_datasets

            return {"source": self.source, "ir_datasets": ir_datasets.__version__}
        return {
            "source": "local",
            "files": [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in self.files],
        }

    def checksums(self) -> dict:
        """md5 of each local file and whether it is the official one (ir_datasets' pinned md5)."""
        if self.files is None:
            return {"source": self.source}
        official = _official_corpus_md5s(self.language)
        md5s = {p.name: md5_of(p) for p in self.files}
        checks = {"files": md5s, "official": bool(md5s) and set(md5s.values()) <= official}
        return checks if self.origin == "local" else {"source": self.origin, **checks}

    def passage_count(self) -> int | None:
        """How many passages, before reading them (a progress total): the published count for ir_datasets' copy and
        for local files that are the complete official set; otherwise the lines of files up to
        :data:`COUNT_LIMIT` bytes in all (seconds); None beyond that, where only reading would tell."""
        if self.files is None:
            return PUBLISHED_PASSAGES.get(self.language)
        official = _official_corpus_md5s(self.language)
        if official and {md5_of(p) for p in self.files} == official and len(self.files) == len(official):
            return PUBLISHED_PASSAGES.get(self.language)
        if sum(p.stat().st_size for p in self.files) > COUNT_LIMIT:
            return None
        return sum(_records(p) for p in self.files)

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        """(doc_id, title, text) in corpus order."""
        if self.files is None:
            folder = (configured_data_dir(None) or Path("<data folder>")) / NAME / self.language / "corpus"
            missing = missing_corpus_message(self.language, folder)
            _fail_fast_if_unreachable(f"v1.0/{self.language}/corpus/0", f"{missing} (its download site is unreachable)")
            try:
                for doc in _irds_dataset(f"{NAME}/{self.language}").docs_iter():
                    yield doc.doc_id, doc.title, doc.text
            except OSError as exc:  # no network (requests' errors are OSErrors): one line, with what to do
                raise XlirError(f"{missing} ({type(exc).__name__})") from None
            return
        for path in self.files:
            yield from _read_jsonl(path)


def _official_corpus_md5s(lang: str) -> set[str]:
    """The md5 ir_datasets pins for each file of ``lang``'s corpus (the official set)."""
    return {v["expected_md5"] for k, v in _irds_downloads().items() if k.startswith(f"v1.0/{lang}/corpus/")}


COUNT_LIMIT = 1 << 30  # bytes of corpus files whose lines are counted for a progress total (~10 s decompressing)


def _records(path: Path) -> int:
    """Lines of a jsonl(.gz) file (one passage each; MIRACL's files have no blank lines), counted in 1 MiB blocks."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    count, last = 0, b"\n"
    with opener(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _read_jsonl(path: Path) -> Iterator[tuple[str, str, str]]:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    yield str(record["docid"]), str(record.get("title", "")), str(record["text"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise XlirError(
                        f"{path}:{number}: not a MIRACL passage record ({type(exc).__name__}: {exc}); "
                        "each line must be JSON with docid, title and text"
                    ) from None
    except (OSError, EOFError) as exc:
        raise XlirError(f"cannot read corpus file {path}: {exc}") from None


def corpus(lang: str, data_dir: str | os.PathLike | None = None) -> Corpus:
    """The corpus of ``lang``: local files when the data folder has them, else ir_datasets (network)."""
    configured = configured_data_dir(data_dir)
    if configured is not None:
        folder = configured / NAME / lang / "corpus"
        files = sorted(
            (p for p in folder.glob("*.jsonl*") if p.name.endswith((".jsonl", ".jsonl.gz")) and p.is_file()),
            key=_natural,
        )
        twice = sorted(p.name for p in files if p.suffix == ".gz" and p.with_suffix("") in files)
        if twice:
            raise XlirError(
                f"{folder} holds {twice[0]} and its decompressed copy {twice[0][:-3]}: the corpus would be read twice; "
                "remove one of them"
            )
        if files:
            return Corpus(lang, files)
    cached = irds_cached_files(lang)
    if cached:
        return Corpus(lang, cached, origin="ir_datasets cache")
    if configured is not None and (os.environ.get("XLIR_BENCH_MIRACL_OFFLINE") or os.environ.get("HF_HUB_OFFLINE")):
        raise XlirError(missing_corpus_message(lang, configured / NAME / lang / "corpus"))
    return Corpus(lang, None)


def irds_cached_files(lang: str) -> list[Path] | None:
    """The corpus files of ``lang`` in ir_datasets' own cache (``IR_DATASETS_HOME``, default ``~/.ir_datasets``), in
    corpus order, when every one is there: read as local files, so they are checksummed against the md5 that
    ir_datasets pins and the result says whether they are the official ones (ir_datasets checks a file only while
    downloading it; one placed or replaced by hand would be read unchecked)."""
    home = irds_home()
    entries = sorted(
        ((int(k.rsplit("/", 1)[1]), v) for k, v in _irds_downloads().items() if k.startswith(f"v1.0/{lang}/corpus/")),
        key=lambda kv: kv[0],
    )
    files = [home / NAME / v["cache_path"] for _, v in entries]
    return files if files and all(p.is_file() for p in files) else None


def missing_corpus_message(lang: str, folder: Path) -> str:
    return (
        f"no MIRACL {lang} corpus: put its files (miracl/miracl-corpus, miracl-corpus-v1.0-{lang}/docs-*.jsonl.gz) "
        f"in {folder}, or go online and unset XLIR_BENCH_DATA so ir_datasets downloads miracl/{lang}"
    )


def vector_gigabytes(lang: str, dim: int, bytes_per_value: int = 4) -> float:
    return PUBLISHED_PASSAGES[lang] * dim * bytes_per_value / 1e9


@dataclass
class MiraclData:
    """The chosen languages' queries and qrels in memory, and their corpora as streams."""

    name: str
    languages: list[str]
    topics: dict[str, Topics]
    corpora: dict[str, Corpus]
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def checksums(self) -> dict[str, str]:
        return {k: v for t in self.topics.values() for k, v in t.checksums.items()}


def load(languages: tuple[str, ...], data_dir=None) -> MiraclData:
    topics = {lang: load_topics(lang, data_dir) for lang in languages}
    corpora = {lang: corpus(lang, data_dir) for lang in languages}
    return MiraclData(suite_name(languages), list(languages), topics, corpora)
