"""Writes really-pretty.jsonl: for each body of ../vectors.jsonl, what
Python fedmsg 1.1.7's fedmsg-tail --really-pretty prints for it before
pygments colours it: fedmsg.encoding.pretty_dumps of the message after
fedmsg.crypto.strip_credentials. Run with the Python reference on
PYTHONPATH (see WIRE.md / python-reference/README.md):

    python3 really_pretty.py < ../vectors.jsonl > really-pretty.jsonl
"""
import json
import sys

import fedmsg.crypto
import fedmsg.encoding

for line in sys.stdin:
    case = json.loads(line)
    try:
        message = json.loads(case["body"])
    except ValueError:
        continue
    if not isinstance(message, dict):
        continue
    pretty = fedmsg.encoding.pretty_dumps(fedmsg.crypto.strip_credentials(message))
    print(json.dumps({"name": case["name"], "body": case["body"], "pretty": pretty}, sort_keys=True))
