"""The words the answer path reads by, in one place: tokens and stems, stopwords, number words, months, units,
names and the ``[n]`` citation marker. Retrieval, evidence selection, the checks and the follow-up rules all
import from here, so a word list changed here changes everywhere at once.

English only; a name is a capitalised word, nothing smarter.
"""

from __future__ import annotations

import re

import Stemmer

_TOKEN = re.compile(r"\d+(?:[.,]\d+)*[^\W\d_]*|[^\W\d_]+(?:[-'’][^\W\d_]+)*\d*[a-z]*|\w+", re.UNICODE)
STOPWORDS = frozenset(
    (
        "a an and are as at be been but by did do does for from had has have he her his how i if in into is "
        "it its of on or our she so than that the their them then there these they this to was we were what "
        "when which while who whom why will with would you your about after also can could may might more "
        "most said says say according article articles"
    ).split()
)
# Words that open or glue a question and are capitalised only for that reason ("What", "According"): never names.
QUESTION_WORDS = frozenset("what which who whom whose when where why how does did do is are was were according "
                           "in the a an and of to for on by if as can could would should will has have had i".split())

# Words that point back to something named earlier ("Who runs it?", "His firm ...").
PRONOUNS = tuple("he she it they them him his her hers its their theirs".split())
DEMONSTRATIVES = ("this", "these", "those")

# Number words, read as their digits when a sentence is checked against a quote ("seven" is "7").
NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven "
    "twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}
NUMBER_WORD = re.compile(r"\b(" + "|".join(NUMBER_WORDS) + r")\b", re.IGNORECASE)
# Words that state an amount without digits ("dozens of", "twice as many").
AMOUNT_WORDS = ("dozens?", "hundreds?", "thousands?", "millions?", "billions?", "half", "twice", "double", "triple")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

MONTHS = ("january february march april may june july august september october november december "
          "jan feb mar apr jun jul aug sep sept oct nov dec").split()

WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()

# Units that tell two equal numbers apart ("11.4 points" is not "11.4 per cent"); a regex alternation.
UNITS = ("points?|per ?cent|percent|%|nanometres?|nanometers?|nm|million|billion|trillion|years?|months?|"
         "weeks?|days?|hours?|minutes?|seconds?|episodes?|companies|products|positions")
# Units of measure a question can ask an amount in ("in teraflops"); not time units: "the biggest rally in
# years" asks for no amount.
MEASURES = ("points|teraflops|petaflops|flops|nanometres|nanometers|metres|meters|kilometres|kilometers|miles|"
            "kilograms|grams|tonnes|tons|watts|kilowatts|megawatts|gigawatts|gigabytes|terabytes|bytes|"
            "degrees|hertz|gigahertz")
# Stem prefix of a unit -> its abbreviation ("7nm" is in nanometres).
UNIT_ABBREV = {"nanometr": "nm", "kilometr": "km", "kilogram": "kg", "megawatt": "mw", "gigawatt": "gw",
               "percent": "%", "percentag": "%"}

# A citation marker with the space before it: "[2]", "[1, 3]", "[1; 2]".
MARKER = re.compile(r"\s*\[(\d+(?:\s*[,;]\s*\d+)*)\]")
# A run of capitalised words ("Zhou Hongyi", "Super Bowl"), one capitalised word, any word.
NAME_GROUP = re.compile(r"\b[A-Z][\w'’-]*(?:\s+[A-Z][\w'’-]*)*")
NAME = re.compile(r"\b[A-Z][\w'’]*")
WORD = re.compile(r"\w[\w'’]*")


def tokenize(text: str) -> list[str]:
    """Lower-cased word and number tokens without stopwords; "11.4" and "9000s" stay whole.

    >>> tokenize("The Kirin 9000S rose 11.4 per cent, according to Huawei's report.")
    ['kirin', '9000s', 'rose', '11.4', 'per', 'cent', "huawei's", 'report']
    """
    return [t for t in (m.group(0).lower() for m in _TOKEN.finditer(text)) if t not in STOPWORDS]


_STEMMER = Stemmer.Stemmer("english")


def terms(text: str) -> list[str]:
    """BM25 terms: ``tokenize`` then Snowball stemming, so "launched" finds "launch".

    >>> terms("Huawei launched its phones")
    ['huawei', 'launch', 'phone']
    """
    return _STEMMER.stemWords(tokenize(text))


def content_words(text: str) -> list[str]:
    """Content words, crudely stemmed to 5 characters so "sanctions"/"sanctioned" match (support scoring).

    >>> content_words("Sanctioned firms said 11.4")
    ['sanct', 'firms', '11.4']
    """
    return [t[:5] if not t[0].isdigit() else t for t in tokenize(text)]


def digits(text: str) -> str:
    """Number words as digits.

    >>> digits("Seven of the twenty firms")
    '7 of the 20 firms'
    """
    return NUMBER_WORD.sub(lambda m: str(NUMBER_WORDS[m.group(0).lower()]), text)


def strip_markers(text: str) -> str:
    """The text without its ``[n]`` markers, whitespace collapsed.

    >>> strip_markers("It rose [1]. It fell [2, 3].")
    'It rose. It fell.'
    """
    return " ".join(MARKER.sub("", text).split())
