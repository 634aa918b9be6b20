#!/bin/sh
# Regenerates fedmsg-config.json with the real Python fedmsg 1.1.7 (see
# /work/shared/python-reference/README.md for PYTHONPATH): each
# python.d/*.json becomes a fedmsg.d/*.py file that sets config to the same
# object, and fedmsg's own "fedmsg-config" command prints the merged result.
# HOME points at an empty directory so that ~/.fedmsg.d cannot interfere.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/fedmsg.d" "$work/home"
for f in "$here"/python.d/*.json; do
	name=$(basename "$f" .json)
	printf 'import json\nconfig = json.loads(r"""%s""")\n' "$(cat "$f")" >"$work/fedmsg.d/$name.py"
done
cd "$work"
HOME="$work/home" /usr/bin/python3 -W ignore -c \
	'from fedmsg.commands.config import config; config()' >"$here/fedmsg-config.json"
