"""Writes query-terse.jsonl: for each body of ../vectors.jsonl plus a few
bodies made here for the corners of Python's str() (quotes, floats,
nesting), what Python fedmsg 1.1.7's fedmsg-tail prints for --query (the
values of fedmsg.utils.dict_query, str()-ed and joined with ", ") and for
--terse (fedmsg.meta.msg2repr with fedmsg's own processors only). Run
with the Python reference on PYTHONPATH (see python-reference/README.md):

    python3 query_terse.py < ../vectors.jsonl > query-terse.jsonl
"""
import json
import sys

import six

import fedmsg.meta
import fedmsg.utils

QUERIES = ["msg", "topic,msg_id", "msg.a, msg.a.b,msg.a.c,msg.a.d", "msg.a.e,msg.a.f,msg.a.g,msg.a.h",
           "nope.x,topic.x, msg.a.i", "msg.a.j,msg.a.k"]
EXTRA = [
    {"topic": "org.fedoraproject.prod.bodhi.update.request", "msg_id": "x", "i": 1, "timestamp": 1,
     "msg": {"a": {"b": [1, "x", None, True], "c": None, "d": "it's \"q\" \u00e9 \\ \n\t\u0007\u200b",
                   "e": 1.5, "f": 1e16, "g": 0.0001, "h": 0.00001, "i": 123456789012345678901234567890,
                   "j": -0.0, "k": {"z": "'", "y": [{}, []]}}}},
    {"topic": "/topic/odd", "msg": {}},
    {"topic": "short.topic", "msg": {}},
]
config = {"topic_prefix": "org.fedoraproject", "environment": "prod",
          "topic_prefix_re": "org\\.fedoraproject\\.(prod|stg|dev)"}
fedmsg.meta.make_processors(**config)

bodies = []
for line in sys.stdin:
    bodies.append(json.loads(line)["body"])
bodies += [json.dumps(m, sort_keys=True) for m in EXTRA]
for body in bodies:
    try:
        message = json.loads(body)
    except ValueError:
        continue
    if not isinstance(message, dict) or not isinstance(message.get("topic"), str):
        continue
    out = {"body": body, "terse": fedmsg.meta.msg2repr(message, **config), "query": {}}
    for q in QUERIES:
        result = fedmsg.utils.dict_query(message, q)
        out["query"][q] = ", ".join([six.text_type(v) for v in result.values()])
    print(json.dumps(out, sort_keys=True))
