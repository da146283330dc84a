"""Reader for the WordNet 3.0 database files (Debian's wordnet-base, /usr/share/wordnet).

Parses data.{noun,verb,adj,adv} (one synset a line: offset, lexfile, type, hex word count,
words with hex lex ids, pointers, verb frames, "| gloss") and cntlist.rev (sense key, sense
number, tag count) and joins them, so each synset carries how often each of its lemmas was seen
in the tagged corpus. Standard library only.
"""
import os

WORDNET_DIR = os.environ.get("WORDNET_DIR", "/usr/share/wordnet")
POS_FILES = (("noun", "n"), ("verb", "v"), ("adj", "a"), ("adv", "r"))
SS_TYPE_NUM = {"n": 1, "v": 2, "a": 3, "s": 5, "r": 4}


class Synset:
    __slots__ = ("offset", "pos", "lexfile", "lemmas", "lex_ids", "hypernyms", "definition",
                 "examples", "counts")

    def __init__(self, offset, pos, lexfile, lemmas, lex_ids, hypernyms, definition, examples):
        self.offset = offset
        self.pos = pos
        self.lexfile = lexfile
        self.lemmas = lemmas          # as written in WordNet, underscores for spaces
        self.lex_ids = lex_ids
        self.hypernyms = hypernyms    # [(pos, offset)] of '@' and '@i' pointers, in file order
        self.definition = definition
        self.examples = examples
        self.counts = [0] * len(lemmas)  # tag count of each lemma's sense (cntlist.rev)

    @property
    def key(self):
        return (self.pos, self.offset)

    def total_count(self):
        return sum(self.counts)


def split_gloss(gloss):
    """'definition; "example one"; "example two"' -> (definition, [examples])."""
    parts = [p.strip() for p in gloss.split(";")]
    definition, examples = [], []
    for p in parts:
        if not p:
            continue
        if p.startswith('"'):
            q = p.strip('"').strip()
            # example sentences sometimes end with an attribution: "..." - Author
            if '"' in q:
                q = q.split('"')[0].strip()
            if q:
                examples.append(q)
        elif not examples:
            definition.append(p)
    return "; ".join(definition), examples


def _strip_marker(word):
    # adjective syntactic markers: (a) (p) (ip)
    for m in ("(a)", "(p)", "(ip)"):
        if word.endswith(m):
            return word[: -len(m)]
    return word


def parse_data_line(line, pos):
    if line.startswith("  "):
        return None
    head, _, gloss = line.partition(" | ")
    f = head.split()
    offset, lexfile, ss_type = f[0], int(f[1]), f[2]
    n = int(f[3], 16)
    lemmas, lex_ids = [], []
    i = 4
    for _ in range(n):
        lemmas.append(_strip_marker(f[i]))
        lex_ids.append(int(f[i + 1], 16))
        i += 2
    p_cnt = int(f[i]); i += 1
    hyper = []
    for _ in range(p_cnt):
        sym, off, ppos = f[i], f[i + 1], f[i + 2]
        if sym in ("@", "@i"):
            hyper.append((ppos if ppos != "s" else "a", off))
        i += 4
    definition, examples = split_gloss(gloss.strip())
    return Synset(offset, pos, lexfile, lemmas, lex_ids, hyper, definition, examples), ss_type


def load(wordnet_dir=WORDNET_DIR):
    """Returns {(pos, offset): Synset} with pos in n v a r (satellites folded into a), in file order
    (dicts keep insertion order), with tag counts filled in."""
    synsets = {}
    by_sense = {}
    for name, pos in POS_FILES:
        with open(os.path.join(wordnet_dir, "data." + name), encoding="utf-8") as fh:
            for line in fh:
                r = parse_data_line(line.rstrip("\n"), pos)
                if r is None:
                    continue
                s, ss_type = r
                synsets[s.key] = s
                for j, (lem, lid) in enumerate(zip(s.lemmas, s.lex_ids)):
                    by_sense[(lem.lower(), SS_TYPE_NUM[ss_type], s.lexfile, lid)] = (s, j)
    with open(os.path.join(wordnet_dir, "cntlist.rev"), encoding="utf-8") as fh:
        for line in fh:
            f = line.split()
            if len(f) != 3:
                continue
            lemma, _, rest = f[0].partition("%")
            k = rest.split(":")
            hit = by_sense.get((lemma, int(k[0]), int(k[1]), int(k[2])))
            if hit is not None:
                s, j = hit
                s.counts[j] += int(f[2])
    return synsets


def words(lemma):
    return lemma.replace("_", " ")
