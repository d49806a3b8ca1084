"""The fine-tuning knowledge base (`prompts/knowledge/*.md`) and its retrieval, for the chat
agent: find the sections that answer a question, cite them, and either show them (no LLM)
or build the grounded prompt an LLM phrases its answer from.

Every `## ` heading of a knowledge file starts a self-contained section. Retrieval is
TF-IDF with cosine similarity: word 1-2-grams over heading and text, plus character
3-5-grams over the heading alone (they catch "overfit" for "overfitting", "quantize" for
"quantise"). Questions are first expanded with a small table of domain synonyms ("val
loss" -> "validation loss", "OOM" -> "out of memory"). scikit-learn is imported on first
use, so `ftagent --help` stays fast, and the index is built once per process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ftagent import prompts

KNOWLEDGE_DIR = prompts.HERE / "knowledge"
SOURCE_PREFIX = "prompts/knowledge"
# Below this score the best section rarely answers the question: on the test table,
# on-topic questions score 0.14 and up, off-topic ones ("weather in Paris") 0.07 at most.
MIN_SCORE = 0.10
# Words over the whole section carry the meaning; the heading's character n-grams add
# what a section is about, robust to inflection and spelling. Measured on the test table
# (70 questions): words alone 63 top-1 / 68 top-3; with heading characters at 0.2-0.5,
# 64-65 / 70, and 0.3 separates off-topic questions best; character n-grams over whole
# sections did no better and took ~8x longer to build.
WORD_WEIGHT, HEADING_CHAR_WEIGHT = 0.7, 0.3
HEADING_REPEAT = 3  # a heading says what its section answers: weigh it like a short text

# (pattern, what is appended) applied to questions: the knowledge files use the canonical
# terms, users often do not. Appending (not replacing) keeps the user's own word.
SYNONYMS: tuple[tuple[str, str], ...] = (
    (r"\bval(?:id)?[ _-]?loss\b|\beval[ _-]?loss\b", "validation loss"),
    (r"\btrain(?:ing)?[ _-]?loss\b", "training loss"),
    (r"\booms?\b|\bcuda out of memory\b|\bout of (?:gpu )?memory\b", "out of memory OOM"),
    (r"\blr\b", "learning rate"),
    (r"\bft\b|\bfine[ -]?tun\w*", "fine-tuning"),
    (r"\bnan\b|\binf\b", "NaN inf"),
    (r"\brag\b|\bretrieval\b", "RAG retrieval-augmented generation"),
    (r"\bbs\b|\bbatch[ _-]?size\b|\bmicro[ -]?batch\b", "batch size"),
    (r"\bgrad(?:ient)?[ _-]?accum\w*", "gradient accumulation"),
    (r"\bctx\b|\bcontext (?:length|window)\b|\bseq(?:uence)?[ _-]?len\w*|\bmax[ _-]?len\w*",
     "max length sequence length"),
    (r"\bquantiz\w*", "quantise quantisation"),
    (r"\bnf4\b", "QLoRA 4-bit"),
    (r"\boverfit\w*|\bmemori[sz]\w*", "overfitting"),
    (r"\bunderfit\w*", "underfitting"),
    (r"\bforget\w*|\bforgot\w*", "catastrophic forgetting"),
    (r"\beos\b|\bend[ -]of[ -](?:turn|text|sequence)\b|\bstop token\b", "EOS end-of-turn"),
    (r"\bdoes ?n[o']t stop\b|\bnever stops?\b|\bkeeps? (?:going|generating|talking)\b"
     r"|\brambl\w*|\brepeat\w*", "does not stop repeats"),
    (r"\btemplate\b", "chat template"),
    (r"\bf1\b", "F1 macro-F1"),
    (r"\bppl\b", "perplexity"),
    (r"\bjson\b", "JSON structured"),
    (r"\bgguf\b|\bllama\.?cpp\b", "GGUF llama.cpp Ollama"),
    (r"\bollama\b", "Ollama GGUF"),
    (r"\bserv(?:e|ing)\b|\bendpoint\b|\binference server\b", "serving"),
    (r"\bmulti[ -]?gpu\b|\bseveral gpus\b|\bddp\b|\bfsdp\b|\bzero-?3\b|\bdeepspeed\b",
     "several GPUs DDP FSDP DeepSpeed"),
    (r"\bvram\b|\bgpu memory\b|\bhow much memory\b", "memory per method"),
    (r"\bleak\w*|\bcontaminat\w*", "leakage test set"),
    (r"\bdedup\w*|\bduplicat\w*", "duplicates near-duplicates"),
    (r"\bjailbreak\w*|\bharmful\b|\bunsafe\b", "harmful refusal safety"),
    (r"\bjudge\b|\bllm[ -]as[ -]a?[ -]?judge\b", "LLM-as-judge judge"),
    (r"\bpreference pairs?\b|\bchosen\b|\brejected\b", "preference pairs DPO"),
    (r"\bhow many examples\b|\bhow much data\b|\bdataset size\b", "how much training data"),
)
_SYNONYMS = tuple((re.compile(p, re.I), add) for p, add in SYNONYMS)


def expand(text: str) -> str:
    """`text` with the canonical form of every domain term it uses appended."""
    added = [add for pattern, add in _SYNONYMS if pattern.search(text)]
    return text + ("\n" + " ".join(added) if added else "")


@dataclass(frozen=True)
class Section:
    """One `## ` section of a knowledge file."""

    file: str  # e.g. "troubleshooting.md"
    heading: str
    text: str  # the body, without its heading line

    @property
    def source(self) -> str:
        return f"{SOURCE_PREFIX}/{self.file}"


@dataclass(frozen=True)
class Passage:
    """A retrieved section with its similarity to the question."""

    source: str  # "prompts/knowledge/troubleshooting.md"
    heading: str
    text: str
    score: float

    @property
    def file(self) -> str:
        return Path(self.source).name

    @property
    def cite(self) -> str:
        return f"{self.file} § {self.heading}"

    def markdown(self) -> str:
        return f"### {self.heading}\n\n{self.text}\n\n*Source: {self.cite}*"


_HEADING = re.compile(r"^## +(.+?)\s*#*\s*$")
_COMMENT = re.compile(r"<!--.*?-->", re.S)


def parse_sections(markdown: str, file: str) -> list[Section]:
    """The `## ` sections of one knowledge file, in order; text before the first heading
    (the file's title) is not a section. A `## ` inside a code fence is not a heading."""
    sections: list[Section] = []
    heading, lines, fenced = None, [], False

    def close() -> None:
        if heading is not None:
            sections.append(Section(file, heading, _COMMENT.sub("", "\n".join(lines)).strip()))

    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        m = None if fenced else _HEADING.match(line)
        if m:
            close()
            heading, lines = m.group(1).strip(), []
        else:
            lines.append(line)
    close()
    return sections


@lru_cache(maxsize=4)
def load_sections(folder: str | None = None) -> tuple[Section, ...]:
    """Every section of every `*.md` file in the knowledge folder, files in name order."""
    root = Path(folder) if folder else KNOWLEDGE_DIR
    out: list[Section] = []
    for path in sorted(root.glob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        out.extend(parse_sections(path.read_text(encoding="utf-8"), path.name))
    return tuple(out)


def topics(folder: str | None = None) -> dict[str, str]:
    """Knowledge file -> its title (the `# ` line), for "I can tell you about ..."."""
    root = Path(folder) if folder else KNOWLEDGE_DIR
    out = {}
    for path in sorted(root.glob("*.md")):
        first = path.read_text(encoding="utf-8").lstrip().splitlines()[0]
        out[path.name] = first.lstrip("# ").strip() if first.startswith("# ") else path.stem
    return out


class Retriever:
    """TF-IDF index over sections; `search` returns the best passages for a question."""

    def __init__(self, sections: tuple[Section, ...] | list[Section]):
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

        self.sections = tuple(sections)
        # Words that carry the question's meaning here ("going up" vs "not going down",
        # "too many", "first steps") stay; the rest of the English list goes.
        keep = {"up", "down", "not", "no", "too", "more", "less", "few", "full", "first",
                "last", "over", "under", "empty", "same", "still", "off", "out", "before",
                "after", "again"}
        stop = sorted(ENGLISH_STOP_WORDS - keep)
        self.word = TfidfVectorizer(lowercase=True, stop_words=stop, ngram_range=(1, 2),
                                    sublinear_tf=True,
                                    # keep "fine-tuning", "macro-f1", "2e-4", "llama.cpp" whole
                                    token_pattern=r"(?u)\b\w[\w.+-]*\w\b|\b\w\b")
        self.heading_char = TfidfVectorizer(lowercase=True, analyzer="char_wb",
                                            ngram_range=(3, 5), sublinear_tf=True)
        self.word_matrix = self.word.fit_transform([self._doc(s) for s in self.sections])
        self.heading_matrix = self.heading_char.fit_transform([s.heading for s in self.sections])

    @staticmethod
    def _doc(s: Section) -> str:
        return " \n".join([s.heading] * HEADING_REPEAT) + "\n" + s.text

    def scores(self, question: str) -> list[float]:
        """Similarity of the question with every section: a weighted sum of cosines (rows
        are L2-normalised, so a dot product is the cosine)."""
        q = [expand(question)]
        word = (self.word_matrix @ self.word.transform(q).T).toarray().ravel()
        head = (self.heading_matrix @ self.heading_char.transform(q).T).toarray().ravel()
        return list(WORD_WEIGHT * word + HEADING_CHAR_WEIGHT * head)

    def search(self, question: str, k: int = 3) -> list[Passage]:
        scored = sorted(zip(self.scores(question), range(len(self.sections)), strict=True),
                        key=lambda x: -x[0])[:k]
        return [Passage(self.sections[i].source, self.sections[i].heading,
                        self.sections[i].text, round(float(score), 4))
                for score, i in scored]


@lru_cache(maxsize=4)
def retriever(folder: str | None = None) -> Retriever:
    """The index over the knowledge folder, built on first use and kept."""
    return Retriever(load_sections(folder))


def retrieve(question: str, k: int = 3) -> list[Passage]:
    """The `k` sections most similar to the question, best first (scores may be ~0)."""
    return retriever().search(question, k)


def _topic_list() -> str:
    return "\n".join(f"- {title} (`{file}`)" for file, title in topics().items())


def answer_without_llm(question: str, k: int = 3, min_score: float = MIN_SCORE) -> str:
    """The best section as Markdown with its citation, and the next ones when they are
    nearly as relevant; or, when nothing scores `min_score`, a "nothing on that" answer
    listing the topics the knowledge base covers."""
    passages = retrieve(question, k)
    if not passages or passages[0].score < min_score:
        return ("I have nothing on that in the fine-tuning knowledge base. It covers:\n\n"
                f"{_topic_list()}\n\nTry asking about one of these, e.g. \"why is my "
                "validation loss going up?\" or \"what learning rate for QLoRA?\"")
    best = passages[0]
    parts = [best.markdown()]
    # Show a second section only when it is nearly as good: most questions have one answer.
    close = [p for p in passages[1:] if p.score >= max(min_score, 0.8 * best.score)]
    parts += [p.markdown() for p in close[:1]]
    others = [p.cite for p in passages[1:] if p not in close[:1] and p.score >= min_score]
    if others:
        parts.append("See also: " + "; ".join(others) + ".")
    return "\n\n".join(parts)


def _template() -> tuple[str, str]:
    """(system, user) templates from prompts/answer_from_knowledge.md."""
    text = _COMMENT.sub("", prompts.load("answer_from_knowledge.md"))
    parts = re.split(r"^# (system|user)\s*$", text, flags=re.M)
    found = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
    if set(found) != {"system", "user"}:
        raise ValueError("answer_from_knowledge.md needs a '# system' and a '# user' part")
    return found["system"], found["user"]


def number_passages(passages: list[Passage]) -> str:
    """Passages as numbered blocks, `[1] file § heading` then the text."""
    return "\n\n".join(f"[{i}] {p.cite}\n{p.text}" for i, p in enumerate(passages, 1))


def grounding_prompt(question: str, passages: list[Passage], run_facts: str = ""
                     ) -> list[dict]:
    """System and user messages that ask an LLM to answer `question` only from the
    numbered `passages` (and the current run's facts, when given), citing them as [1], [2]."""
    system, user = _template()
    values = {"passages": number_passages(passages) or "(no passages found)",
              "run_facts": run_facts.strip() or "(no run selected)",
              "question": question.strip()}
    # One pass, so braces inside passages (JSON examples) or the question stay as they are.
    user = re.sub(r"\{(passages|run_facts|question)\}", lambda m: values[m.group(1)], user)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
