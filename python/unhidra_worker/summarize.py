"""summarize: an extractive summary of a chat conversation.

Input:  {"messages": [{"from": str, "body": str, "ts"?: number}, ...], "max_sentences"?: 3}
Output: {"summary": str, "sentences": [{"text", "from", "ts", "message_index", "score"}],
         "participants": [{"name", "messages"}], "keywords": [str], "message_count": int}

Messages are split into sentences; each sentence is a TF-IDF vector over its
content words (lower-cased, stopwords dropped), with sentences as the
documents. A sentence scores by its cosine similarity to the centroid of the
conversation (how much it talks about what everybody talks about), scaled by a
length factor (very short lines carry little) and a small bonus for opening a
message. Sentences scoring under a quarter of the best are dropped (a
summary may be shorter than asked). The rest are picked greedily by maximal marginal relevance, so
a summary does not repeat itself, and shown in conversation order. Every tie
is broken by position, so the result is deterministic.
"""

import math
import re

from . import stats
from .registry import ModelError

MAX_MESSAGES = 5_000
MAX_BODY = 10_000  # characters per message
MAX_TOTAL = 1_000_000  # characters in all
MAX_SENTENCES_CONSIDERED = 4_000  # the most recent ones
MAX_SUMMARY = 20
MAX_NAME = 128
REDUNDANCY = 0.4  # MMR weight of similarity to already chosen sentences
MIN_RELATIVE = 0.25  # sentences scoring below this share of the best are never picked

_SPLIT = re.compile(r"(?<=[.!?…])\s+|\n+")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)

STOPWORDS = frozenset("""
a about above after again against all also am an and any are aren't as at be because been before being
below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
during each else etc ever few for from further get gets got had hadn't has hasn't have haven't having he
he'd he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm i've if in into is
isn't it it's its itself just let's like me more most much must mustn't my myself no nor not now of off
ok okay on once only or other ought our ours ourselves out over own really same shan't she she'd she'll
she's should shouldn't so some such than that that's the their theirs them themselves then there there's
these they they'd they'll they're they've this those though through to too under until up us very was
wasn't we we'd we'll we're we've were weren't what what's when when's where where's which while who
who's whom why why's will with won't would wouldn't yeah yes yep you you'd you'll you're you've your
yours yourself yourselves lol thanks thank hi hello hey please sure
""".split())


def _parse(inp):
    if not isinstance(inp, dict):
        raise ModelError("input must be an object with a \"messages\" array")
    msgs = inp.get("messages")
    if not isinstance(msgs, list):
        raise ModelError("\"messages\" must be an array")
    if len(msgs) > MAX_MESSAGES:
        raise ModelError(f"{len(msgs)} messages; the limit is {MAX_MESSAGES}")
    k = inp.get("max_sentences", 3)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_SUMMARY:
        raise ModelError(f"\"max_sentences\" must be an integer from 1 to {MAX_SUMMARY}")
    total = 0
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise ModelError(f"messages[{i}] must be an object")
        sender, body, ts = m.get("from", ""), m.get("body"), m.get("ts")
        if not isinstance(sender, str) or len(sender) > MAX_NAME:
            raise ModelError(f"messages[{i}].from must be a string of at most {MAX_NAME} characters")
        if not isinstance(body, str):
            raise ModelError(f"messages[{i}].body must be a string")
        if len(body) > MAX_BODY:
            raise ModelError(f"messages[{i}].body is longer than {MAX_BODY} characters")
        if ts is not None and not stats.is_number(ts):
            raise ModelError(f"messages[{i}].ts must be a number")
        total += len(body)
        if total > MAX_TOTAL:
            raise ModelError(f"the messages hold more than {MAX_TOTAL} characters")
        out.append((sender, body, ts))
    return out, k


def tokens(text):
    return [w for w in (m.group(0).lower() for m in _WORD.finditer(text)) if w not in STOPWORDS and
            not w.isdigit()]


def _cosine(a, b, na, nb):
    if na == 0 or nb == 0:
        return 0.0
    if len(a) > len(b):
        a, b = b, a
    return sum(w * b.get(t, 0.0) for t, w in a.items()) / (na * nb)


def summarize(inp):
    msgs, k = _parse(inp)
    counts = {}
    for sender, _, _ in msgs:
        counts[sender] = counts.get(sender, 0) + 1
    participants = [{"name": n, "messages": c} for n, c in sorted(counts.items(), key=lambda x: (-x[1], x[0]))]

    sents = []  # (message_index, first_in_message, text, tokens)
    for mi, (_, body, _) in enumerate(msgs):
        first = True
        for part in _SPLIT.split(body):
            text = " ".join(part.split())
            if not text:
                continue
            sents.append((mi, first, text, tokens(text)))
            first = False
    sents = sents[-MAX_SENTENCES_CONSIDERED:]
    result = {"summary": "", "sentences": [], "participants": participants, "keywords": [],
              "message_count": len(msgs)}
    if not sents:
        return result

    n = len(sents)
    df = {}
    for s in sents:
        for t in set(s[3]):
            df[t] = df.get(t, 0) + 1
    idf = {t: math.log((n + 1) / (d + 1)) + 1.0 for t, d in df.items()}
    vecs, norms = [], []
    centroid = {}
    for s in sents:
        tf = {}
        for t in s[3]:
            tf[t] = tf.get(t, 0) + 1
        v = {t: (1.0 + math.log(c)) * idf[t] for t, c in tf.items()}
        vecs.append(v)
        norms.append(math.sqrt(sum(x * x for x in v.values())))
        for t, w in v.items():
            centroid[t] = centroid.get(t, 0.0) + w
    cnorm = math.sqrt(sum(x * x for x in centroid.values()))

    scores = []
    for i, s in enumerate(sents):
        nt = len(s[3])
        length = min(1.0, nt / 5.0) if nt < 25 else 25.0 / nt
        bonus = 1.1 if s[1] else 1.0
        scores.append(_cosine(vecs[i], centroid, norms[i], cnorm) * length * bonus)

    chosen = []
    top = max(scores)
    candidates = [i for i in range(n) if norms[i] > 0 and scores[i] > 0 and scores[i] >= MIN_RELATIVE * top]
    while candidates and len(chosen) < k:
        best, best_val = None, None
        for i in candidates:  # ascending order: the earliest wins ties
            red = max((_cosine(vecs[i], vecs[j], norms[i], norms[j]) for j in chosen), default=0.0)
            val = (1 - REDUNDANCY) * scores[i] - REDUNDANCY * red if chosen else scores[i]
            if best_val is None or val > best_val + 1e-12:
                best, best_val = i, val
        chosen.append(best)
        candidates.remove(best)
    chosen.sort()

    out = []
    for i in chosen:
        mi, _, text, _ = sents[i]
        sender, _, ts = msgs[mi]
        out.append({"text": text, "from": sender, "ts": ts, "message_index": mi, "score": round(scores[i], 6)})
    kw = sorted(centroid.items(), key=lambda x: (-x[1], x[0]))[:5]
    result.update(summary=" ".join(f"{s['from']}: {s['text']}" if s["from"] else s["text"] for s in out),
                  sentences=out, keywords=[t for t, _ in kw])
    return result
