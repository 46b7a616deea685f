"""A synthetic-biography world with exact truth (issue 11): fictional people, each with a
birth date, birth city, university, field of study and employer, written as short
biographies from many sentence templates, in the spirit of the bioS data of Allen-Zhu and
Li ("Physics of Language Models", part 3.1).

Two kinds of facts:
- person facts (`PERSON_ATTRIBUTES`): drawn independently per person, so they can only be
  memorized person by person;
- structural facts: a city's country and an employer's headquarters city are fixed
  properties of the city and the employer, repeated across many people, so a small model
  can learn them from structure.

Popularity: `head_people` people appear in `head_documents` documents each (the head); the
other people appear in one document, or two with probability `tail_two_documents` (the long
tail). A person's bucket is decided by how many of their documents are in the train split:
`head` (>= 3), `tail` (1 or 2) or `unseen` (0: every document went to validation).

Everything is a function of `SyntheticConfig` (the seed included): the same source string
gives the same documents, knowledge base and value spans on every machine.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.doc_ids import split_of
from pipelines.files import atomic_path, read_json, write_json

SOURCE = "embedded:synthetic-bios"  # a corpus source (`pipelines.corpus.read_source`); parameters after "?"
EXTRA_SOURCE = "embedded:synthetic-bios-extra"  # the same world's extra biographies (the partner's further reading)
PERSON_ATTRIBUTES = ("birth_date", "birth_city", "university", "field", "employer")
STRUCTURAL_ATTRIBUTES = ("birth_country", "employer_city")
ATTRIBUTES = PERSON_ATTRIBUTES + STRUCTURAL_ATTRIBUTES
# the relation names of the LMLM-format annotations (the judge labels)
RELATIONS = {
    "birth_date": "Birth Date",
    "birth_city": "Birth Place",
    "birth_country": "Country",
    "university": "Education",
    "field": "Field of Study",
    "employer": "Employer",
    "employer_city": "Headquarters",
}
HEAD_MIN_TRAIN_DOCUMENTS = 3  # a person with at least this many train documents is in the head
BUCKETS = ("head", "tail", "unseen")

MALE_NAMES = (
    "James John Robert Michael William David Richard Joseph Thomas Charles Daniel Matthew Anthony Mark Paul Steven "
    "Andrew Kenneth Joshua Kevin Brian George Timothy Ronald Edward Jason Jeffrey Ryan Jacob Gary Nicholas Eric "
    "Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel Gregory Alexander Patrick Frank Raymond Jack "
    "Dennis Jerry Tyler Aaron Henry Adam Peter Nathan Walter Harold Kyle Carl Arthur Roger Keith Lucas Oliver"
).split()
FEMALE_NAMES = (
    "Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy Betty Margaret Sandra "
    "Ashley Kimberly Emily Donna Michelle Carol Amanda Dorothy Melissa Deborah Stephanie Rebecca Sharon Laura "
    "Cynthia Kathleen Amy Angela Shirley Anna Brenda Pamela Emma Nicole Helen Samantha Katherine Christine Debra "
    "Rachel Carolyn Janet Catherine Maria Heather Diane Ruth Julie Olivia Joyce Virginia Victoria Kelly Lauren"
).split()
SURNAMES = (
    "Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Thomas Moore Martin Jackson Thompson "
    "White Harris Clark Lewis Robinson Walker Young Allen King Wright Scott Hill Green Adams Baker Nelson Carter "
    "Mitchell Roberts Turner Phillips Campbell Parker Evans Edwards Collins Stewart Morris Rogers Reed Cook Morgan "
    "Bell Murphy Bailey Cooper Richardson Cox Howard Ward Peterson Gray James Watson Brooks Kelly Sanders Price "
    "Bennett Wood Barnes Ross Henderson Coleman Jenkins Perry Powell Long Patterson Hughes Flores Washington "
    "Butler Simmons Foster Bryant Alexander Russell Griffin Hayes Myers Ford Hamilton Graham Sullivan Wallace "
    "Woods Cole West Jordan Owens Reynolds Fisher Ellis Harrison Gibson Marshall Wells Webb Tucker Porter Hunter "
    "Hicks Crawford Henry Boyd Mason Warren Dixon Burns Gordon Shaw Holmes Rice Robertson Hunt Black Daniels "
    "Palmer Mills Nichols Grant Knight Ferguson Stone Hawkins Dunn Perkins Hudson Spencer Gardner Stephens Payne "
    "Pierce Berry Matthews Arnold Wagner Willis Ray Watkins Olson Carroll Duncan Snyder Hart Cunningham Bradley "
    "Lane Andrews Ruiz Harper Fox Riley Armstrong Carpenter Weaver Greene Lawrence Elliott Chavez Sims Austin"
).split()
CITIES = {  # city -> country
    "Lyon": "France", "Marseille": "France", "Toulouse": "France", "Munich": "Germany", "Hamburg": "Germany",
    "Cologne": "Germany", "Milan": "Italy", "Naples": "Italy", "Turin": "Italy", "Madrid": "Spain",
    "Seville": "Spain", "Valencia": "Spain", "Porto": "Portugal", "Lisbon": "Portugal", "Krakow": "Poland",
    "Warsaw": "Poland", "Osaka": "Japan", "Kyoto": "Japan", "Chicago": "United States", "Boston": "United States",
    "Denver": "United States", "Seattle": "United States", "Toronto": "Canada", "Montreal": "Canada",
    "Vancouver": "Canada", "Melbourne": "Australia", "Brisbane": "Australia", "Manchester": "England",
    "Liverpool": "England", "Leeds": "England", "Glasgow": "Scotland", "Edinburgh": "Scotland",
    "Rotterdam": "Netherlands", "Utrecht": "Netherlands", "Gothenburg": "Sweden", "Bergen": "Norway",
    "Vienna": "Austria", "Zurich": "Switzerland", "Dublin": "Ireland", "Athens": "Greece",
}
UNIVERSITIES = (
    "Brookfield University", "Ashford University", "Marston College", "Kelvin Institute of Technology",
    "Northgate University", "University of Westmoor", "Hollis College", "Redfield University",
    "Carrow Institute of Technology", "University of Eastbrook", "Langley University", "Pemberton College",
    "Whitby University", "University of Dunmore", "Fairhaven Institute of Technology", "Greywater University",
    "Stanmore College", "University of Halloway", "Brightwell University", "Corwin College",
    "Elmstead University", "University of Kingsbridge", "Thornbury Institute of Technology", "Oakhurst College",
)
FIELDS = (
    "chemistry", "economics", "physics", "mathematics", "linguistics", "architecture", "medicine", "law",
    "philosophy", "biology", "geology", "astronomy", "statistics", "sociology", "history", "engineering",
    "psychology", "music", "journalism", "agriculture",
)
EMPLOYER_STEMS = (
    "Halvorsen Vantrell Okafor Brightline Calloway Dunmere Everett Farrowby Glenmark Harrowgate Ivers Jarrow "
    "Kessler Lindqvist Marlowe Norcross Oberlin Penrose Quillon Rowntree Selwyn Tremaine Upfield Varden"
).split()
EMPLOYER_SUFFIXES = ("Analytics", "Dynamics", "Systems", "Robotics", "Therapeutics", "Energy", "Industries", "Labs")
MONTHS = ("January February March April May June July August September October November December").split()
EMPLOYER_PATTERN = re.compile(r"\b([A-Z][a-z]+) (" + "|".join(EMPLOYER_SUFFIXES) + r")\b")
DATE_PATTERN = re.compile(r"\b(" + "|".join(MONTHS) + r") ([1-9]|[12][0-9]|3[01]), (\d{4})\b")

# Sentence templates. Slots: {name}, pronouns ({He} {he} {his} {His} {him}) and the
# attributes. Each document has one birth sentence first, then education and career in
# either order, with up to two filler sentences (no facts) between them.
BIRTH_TEMPLATES = (
    "{name} was born on {birth_date} in {birth_city}, {birth_country}.",
    "{name} was born in {birth_city}, {birth_country}, on {birth_date}.",
    "{name} (born {birth_date}) is a native of {birth_city}, {birth_country}.",
    "Born on {birth_date} in {birth_city}, {birth_country}, {name} grew up there.",
    "{name}'s birthplace is {birth_city}, {birth_country}, where {he} was born on {birth_date}.",
)
EDUCATION_TEMPLATES = (
    "{He} studied {field} at {university}.",
    "{He} graduated from {university}, where {he} studied {field}.",
    "After studying {field} at {university}, {he} began {his} career.",
    "{His} subject at {university} was {field}.",
    "At {university}, {name} chose {field} as {his} subject.",
)
CAREER_TEMPLATES = (
    "{He} works for {employer}, a company based in {employer_city}.",
    "{He} is currently employed by {employer}, which is headquartered in {employer_city}.",
    "{His} employer, {employer}, is based in {employer_city}.",
    "{He} has a position at {employer} in {employer_city}.",
    "{name} joined {employer}, headquartered in {employer_city}.",
)
FILLER_TEMPLATES = (
    "{He} is known among colleagues for careful work.",
    "{His} friends describe {him} as patient and generous.",
    "{He} enjoys long walks on weekends.",
    "{He} often speaks at public events.",
    "Colleagues say that {he} is a thoughtful mentor.",
)
TEMPLATES = BIRTH_TEMPLATES + EDUCATION_TEMPLATES + CAREER_TEMPLATES + FILLER_TEMPLATES
PRONOUNS = {
    "male": {"He": "He", "he": "he", "his": "his", "His": "His", "him": "him"},
    "female": {"He": "She", "he": "she", "his": "her", "His": "Her", "him": "her"},
}


@dataclass(frozen=True)
class SyntheticConfig:
    people: int = 1200
    head_people: int = 60
    head_documents: int = 24  # documents per head person
    tail_two_documents: float = 0.5  # a tail person has two documents with this probability, else one
    employers: int = 48
    extra_documents: int = 3  # biographies per person in the extra corpus (EXTRA_SOURCE), read only by the partner
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.head_people <= self.people:
            raise ValueError(f"{SOURCE}: head_people={self.head_people} must be in 1..people ({self.people})")
        if self.people > len(MALE_NAMES + FEMALE_NAMES) * len(SURNAMES):
            raise ValueError(f"{SOURCE}: people={self.people} exceeds the distinct names available")
        if self.employers > len(EMPLOYER_STEMS) * len(EMPLOYER_SUFFIXES):
            raise ValueError(f"{SOURCE}: employers={self.employers} exceeds the distinct names available")

    @classmethod
    def from_source(cls, source: str) -> SyntheticConfig:
        """`embedded:synthetic-bios[?people=N&head_people=N&head_documents=N&tail_two_documents=P&employers=N&extra_documents=N&seed=S]`
        (or `embedded:synthetic-bios-extra?...`, the same world's extra corpus)"""
        base, _, query = source.partition("?")
        if base not in (SOURCE, EXTRA_SOURCE):
            raise ValueError(f"{source}: not a {SOURCE} source")
        types = {f.name: f.type for f in fields(cls)}
        values = {}
        for key, value in parse_qsl(query, strict_parsing=bool(query)):
            if key not in types:
                raise ValueError(f"{source}: unknown parameter {key!r} (known: {', '.join(types)})")
            values[key] = float(value) if types[key] == "float" else int(value)
        return cls(**values)

    def source(self, base: str = SOURCE) -> str:
        return base + "?" + "&".join(f"{k}={v}" for k, v in asdict(self).items())


@dataclass(frozen=True)
class Person:
    person_id: int
    name: str
    gender: str
    birth_date: str
    birth_city: str
    birth_country: str
    university: str
    field: str
    employer: str
    employer_city: str
    documents: int

    def value(self, attribute: str) -> str:
        return getattr(self, attribute)


@dataclass(frozen=True)
class Span:
    attribute: str
    start: int  # character offsets in the document's text
    end: int


@dataclass(frozen=True)
class Document:
    doc_id: str
    person_id: int
    title: str
    text: str
    spans: tuple[Span, ...]  # every attribute value in the text


@dataclass(frozen=True)
class World:
    config: SyntheticConfig
    people: tuple[Person, ...]
    employers: dict[str, str]  # employer -> headquarters city
    documents: tuple[Document, ...]


def employers_of(config: SyntheticConfig, rng: np.random.Generator) -> dict[str, str]:
    names = [f"{s} {x}" for s in EMPLOYER_STEMS for x in EMPLOYER_SUFFIXES]
    chosen = rng.choice(len(names), size=config.employers, replace=False)
    cities = rng.choice(list(CITIES), size=config.employers)
    return {names[i]: str(c) for i, c in zip(chosen, cities)}


def people_of(config: SyntheticConfig, employers: dict[str, str], rng: np.random.Generator) -> list[Person]:
    given = [(n, "male") for n in MALE_NAMES] + [(n, "female") for n in FEMALE_NAMES]
    pairs = rng.choice(len(given) * len(SURNAMES), size=config.people, replace=False)
    employer_names, cities = list(employers), list(CITIES)
    people = []
    for pid, pair in enumerate(pairs.tolist()):
        first, gender = given[pair // len(SURNAMES)]
        city = cities[rng.integers(len(cities))]
        employer = employer_names[rng.integers(len(employer_names))]
        date = f"{MONTHS[rng.integers(12)]} {rng.integers(1, 29)}, {rng.integers(1940, 2001)}"
        documents = config.head_documents if pid < config.head_people else 1 + int(rng.random() < config.tail_two_documents)
        people.append(Person(pid, f"{first} {SURNAMES[pair % len(SURNAMES)]}", gender, date, city, CITIES[city],
                             str(UNIVERSITIES[rng.integers(len(UNIVERSITIES))]), str(FIELDS[rng.integers(len(FIELDS))]),
                             employer, employers[employer], documents))
    return people


def fill(template: str, person: Person, offset: int = 0) -> tuple[str, list[Span]]:
    """The template with the person's name, pronouns and values, and each value's span."""
    out, spans, pos = [], [], offset
    for literal, slot, _, _ in string.Formatter().parse(template):
        out.append(literal)
        pos += len(literal)
        if slot is None:
            continue
        if slot == "name":
            value = person.name
        elif slot in PRONOUNS[person.gender]:
            value = PRONOUNS[person.gender][slot]
        else:
            value = person.value(slot)
            spans.append(Span(slot, pos, pos + len(value)))
        out.append(value)
        pos += len(value)
    return "".join(out), spans


def biography(person: Person, rng: np.random.Generator) -> tuple[str, list[Span]]:
    """Title line, blank line (dwiki's layout), then the sentences."""
    middle = [EDUCATION_TEMPLATES[rng.integers(len(EDUCATION_TEMPLATES))], CAREER_TEMPLATES[rng.integers(len(CAREER_TEMPLATES))]]
    middle = middle[:: 1 - 2 * int(rng.integers(2))]
    fillers = [FILLER_TEMPLATES[i] for i in rng.choice(len(FILLER_TEMPLATES), size=int(rng.integers(3)), replace=False)]
    sentences = [BIRTH_TEMPLATES[rng.integers(len(BIRTH_TEMPLATES))], *middle]
    for filler in fillers:
        sentences.insert(int(rng.integers(1, len(sentences) + 1)), filler)
    text, spans = f"{person.name}\n\n", []
    for k, template in enumerate(sentences):
        text += " " if k else ""
        sentence, sentence_spans = fill(template, person, len(text))
        text += sentence
        spans += sentence_spans
    return text, spans


def generate_world(config: SyntheticConfig) -> World:
    rng = np.random.default_rng([config.seed, 11])
    employers = employers_of(config, rng)
    people = people_of(config, employers, rng)
    documents = []
    for person in people:
        for k in range(person.documents):
            text, spans = biography(person, rng)
            documents.append(Document(f"synbio-s{config.seed}-p{person.person_id:06d}-d{k:03d}", person.person_id,
                                      person.name, text, tuple(spans)))
    order = rng.permutation(len(documents))  # head people's documents spread over the corpus
    return World(config, tuple(people), employers, tuple(documents[i] for i in order))


def record(person: Person) -> str:
    """The person's row of the knowledge base as one line of text: what the cascade's
    trained partner is given as background about the person (A.5's RAG setup gives its
    partner the person's Wikipedia article)."""
    return (f"{person.name}: born {person.birth_date} in {person.birth_city}, {person.birth_country}; studied {person.field} "
            f"at {person.university}; works for {person.employer} in {person.employer_city}.")


def extra_documents(world: World) -> list[Document]:
    """`extra_documents` more documents about every person (unseen ones too), from a random
    stream of their own so the corpus does not depend on them: the partner's further reading,
    as a bigger model has read more than the small one (the embedded pipeline's reference
    reads extra lead sections the same way). Each is the person's `record`, a blank line and a
    biography, so the partner also learns to read a record given before the text (its
    background in the cascade). Spans are those of the biography part."""
    rng = np.random.default_rng([world.config.seed, 12])
    documents = []
    for person in world.people:
        head = record(person) + "\n\n"
        for k in range(world.config.extra_documents):
            text, spans = biography(person, rng)
            spans = tuple(Span(s.attribute, s.start + len(head), s.end + len(head)) for s in spans)
            documents.append(Document(f"synbio-s{world.config.seed}-p{person.person_id:06d}-x{k:03d}", person.person_id,
                                      person.name, head + text, spans))
    return [documents[i] for i in rng.permutation(len(documents))]


def iter_documents(source: str) -> Iterator[Document]:
    world = generate_world(SyntheticConfig.from_source(source))
    yield from extra_documents(world) if source.partition("?")[0] == EXTRA_SOURCE else world.documents


def annotated_text(doc: Document, person_name: str) -> str:
    """The document in LMLM's annotation format: a lookup before every attribute value
    (`born on [dblookup('Mary Smith', 'Birth Date') -> March 3, 1970] March 3, 1970`), the
    values an LLM judge delegates."""
    out, last = [], 0
    for span in sorted(doc.spans, key=lambda s: s.start):
        value = doc.text[span.start:span.end]
        out.append(doc.text[last:span.start])
        out.append(f"[dblookup('{person_name}', '{RELATIONS[span.attribute]}') -> {value}] ")
        last = span.start
    out.append(doc.text[last:])
    return "".join(out)


def annotations(source: str) -> Iterator[dict]:
    """LMLM-format examples (`text`, `annotated_text`, `prompt_id`) for every document."""
    world = generate_world(SyntheticConfig.from_source(source))
    names = {p.person_id: p.name for p in world.people}
    for doc in world.documents:
        yield {"text": doc.text, "annotated_text": annotated_text(doc, names[doc.person_id]), "prompt_id": "knowledge_base"}


def bucket_of(train_documents: int) -> str:
    if train_documents >= HEAD_MIN_TRAIN_DOCUMENTS:
        return "head"
    return "tail" if train_documents > 0 else "unseen"


def knowledge_base_table(world: World, validation_fraction: float = 0.1) -> pa.Table:
    """One row per person: the attributes, documents, train documents and bucket."""
    train = np.zeros(len(world.people), dtype=np.int64)
    for doc in world.documents:
        train[doc.person_id] += split_of(doc.doc_id, validation_fraction) == "train"
    rows = [{**asdict(p), "train_documents": int(n), "bucket": bucket_of(int(n))} for p, n in zip(world.people, train)]
    return pa.Table.from_pylist(rows)


KB_FILE = "knowledge_base.parquet"
STRUCTURE_FILE = "structure.json"


def is_synthetic(source: str) -> bool:
    """The world's corpus (not its extra corpus, which has no knowledge base of its own)."""
    return source.split("?", 1)[0] == SOURCE


def write_knowledge_base(source: str, out_dir: str | Path, validation_fraction: float = 0.1) -> dict:
    """`knowledge_base.parquet` (the people) and `structure.json` (cities' countries,
    employers' cities, the config) in `out_dir`; returns the bucket counts."""
    world = generate_world(SyntheticConfig.from_source(source))
    table = knowledge_base_table(world, validation_fraction)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / KB_FILE) as tmp:
        pq.write_table(table, tmp)
    buckets = {b: table.column("bucket").to_pylist().count(b) for b in BUCKETS}
    write_json(out_dir / STRUCTURE_FILE, {"source": source, "config": asdict(world.config), "cities": CITIES,
                                          "employers": world.employers, "buckets": buckets})
    return buckets


KB_DIR = "knowledge_base"  # inside the corpus folder


def write_beside_corpus(sources: Sequence[str], corpus_dir: str | Path, validation_fraction: float = 0.1) -> dict | None:
    """The knowledge base of the corpus' synthetic source in `corpus_dir/knowledge_base/`
    (None when no source is synthetic); two synthetic sources in one corpus are refused."""
    chosen = [s for s in sources if is_synthetic(s)]
    if len(chosen) > 1:
        raise ValueError(f"sources {chosen}: at most one {SOURCE} source per corpus (one knowledge base)")
    return write_knowledge_base(chosen[0], Path(corpus_dir) / KB_DIR, validation_fraction) if chosen else None


def read_knowledge_base(kb_dir: str | Path) -> tuple[list[dict], dict]:
    """The people (one dict per row) and the structure (cities, employers, config)."""
    kb_dir = Path(kb_dir)
    if not (kb_dir / KB_FILE).exists():
        raise FileNotFoundError(f"{kb_dir / KB_FILE}: no knowledge base (materialize raw_corpus with an {SOURCE} source)")
    return pq.read_table(kb_dir / KB_FILE).to_pylist(), read_json(kb_dir / STRUCTURE_FILE)
