"""Scoring of the demo tasks, as data/<task>/README.md describes it.

math: the last number in the generated answer, compared with the reference within 0.001 (the rule
of the LLM-Adapters evaluation). wordnet: exact match of the answer, taken as the text after the last
"The answer is" (or the first non-empty line when the phrase is missing), after normalisation
(lower case, underscores to spaces, surrounding spaces and final full stops dropped, inner runs of
spaces collapsed).
"""
import re

_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def last_number(text):
    """The last number written in text (commas between thousands allowed), or None."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def score_math(generated, reference):
    """reference: the number (or the reference output, whose last number is used)."""
    if isinstance(reference, str):
        reference = last_number(reference)
    got = last_number(generated)
    return got is not None and reference is not None and abs(got - float(reference)) < 0.001


_ANSWER = re.compile(r"the answer is\s*(.*)", re.IGNORECASE)


def extract_answer(text):
    """The text after the last "The answer is" up to the end of its line; without that phrase, the
    first non-empty line."""
    found = _ANSWER.findall(text)
    if found:
        return found[-1].split("\n", 1)[0]
    lines = [l for l in text.split("\n") if l.strip()]
    return lines[0] if lines else ""


def normalise(text):
    line = text.lower().replace("_", " ").strip()
    while line.endswith("."):
        line = line[:-1].rstrip()
    return " ".join(line.split())


def score_exact(generated, reference):
    """reference: the bare answer (or a reference output, from which the answer is extracted)."""
    if "\n" in reference or _ANSWER.search(reference):
        reference = extract_answer(reference)
    return normalise(extract_answer(generated)) == normalise(reference)


SCORERS = {"math": score_math, "wordnet": score_exact}


def score(task, generated, reference):
    return SCORERS[task](generated, reference)
