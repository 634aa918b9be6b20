#!/usr/bin/python3
"""Regenerates testdata/gpg: throwaway OpenPGP keys, and vectors signed and
judged by Python fedmsg 1.1.7's gpg backend.

    export PYTHONPATH=/work/pyref/fedmsg:/work/pyref/gilmsg:/work/pyref/site
    /usr/bin/python3 testdata/gpg/gen_vectors.py testdata/gpg

Every run makes new keys, so every file here changes together. Test data
only: the secret keys are unprotected.
"""

import base64
import copy
import json
import os
import subprocess
import sys
import tempfile
import time

import fedmsg.crypto
import fedmsg.crypto.gpg
import fedmsg.encoding

OUT = sys.argv[1]
WORK = tempfile.mkdtemp(prefix="gilmsg-gpg-")
HOME = os.path.join(WORK, "home")          # the keyring validators trust
STRANGER = os.path.join(WORK, "stranger")  # a key nobody trusts
PAST = "20200101T000000"


def gpg(home, *args, stdin=None, faked=None):
    cmd = ["gpg", "--homedir", home, "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    if faked:
        cmd += ["--faked-system-time", faked]
    p = subprocess.run(cmd + list(args), input=stdin, capture_output=True)
    if p.returncode:
        raise SystemExit("gpg %s: %s" % (args, p.stderr.decode()))
    return p.stdout


def fingerprint(home, uid):
    for line in gpg(home, "--list-keys", "--with-colons", uid).decode().splitlines():
        if line.startswith("fpr:"):
            return line.split(":")[9]


def make_keys():
    for h in (HOME, STRANGER):
        os.mkdir(h, 0o700)
    gpg(HOME, "--quick-gen-key", "app01 <app01@gilmsg.test>", "rsa2048", "sign", "never")
    gpg(HOME, "--quick-gen-key", "backend01 <backend01@gilmsg.test>", "ed25519", "sign", "never")
    gpg(HOME, "--quick-gen-key", "revoked01 <revoked01@gilmsg.test>", "ed25519", "sign", "never")
    gpg(HOME, "--quick-gen-key", "expired01 <expired01@gilmsg.test>", "ed25519", "sign", "2020-06-01", faked=PAST)
    gpg(HOME, "--quick-gen-key", "unnamed01 <unnamed01@gilmsg.test>", "ed25519", "sign", "never")
    gpg(HOME, "--quick-gen-key", "dsa01 <dsa01@gilmsg.test>", "dsa2048", "sign", "never")
    gpg(HOME, "--quick-gen-key", "sub01 <sub01@gilmsg.test>", "ed25519", "cert", "never")
    gpg(HOME, "--quick-add-key", fingerprint(HOME, "sub01"), "ed25519", "sign", "never")
    # Same user id as app01: only the fingerprint tells them apart.
    gpg(STRANGER, "--quick-gen-key", "app01 <app01@gilmsg.test>", "ed25519", "sign", "never")
    names = ["app01", "backend01", "revoked01", "expired01", "sub01", "unnamed01", "dsa01"]
    keys = {n: fingerprint(HOME, n) for n in names}
    keys["stranger"] = fingerprint(STRANGER, "app01")
    return keys


def envelope(msg, i=1):
    return {
        "topic": "org.gilmsg.dev.test.gpg",
        "msg": msg,
        "timestamp": 1796100000 + i,
        "msg_id": "2026-00000000-0000-4000-8000-%012d" % i,
        "i": i,
        "username": "fedmsg",
    }


def py_sign(env, home, fpr):
    """fedmsg's own gpg.sign; on Python 3 it returns the signature as bytes,
    which is the publish bug WIRE.md §12 mentions, so decode it here."""
    signed = fedmsg.crypto.gpg.sign(copy.deepcopy(env), gpg_home=home, gpg_signing_key=fpr)
    signed["signature"] = signed["signature"].decode("ascii")
    return signed


def raw_sig(signed):
    return base64.b64decode(signed["signature"])


def b64(b):
    return base64.b64encode(b).decode("ascii")


def judge(body, home):
    cfg = {"crypto_validate_backends": ["gpg"], "gpg_home": home}
    try:
        return bool(fedmsg.crypto.validate(fedmsg.encoding.loads(body), **cfg))
    except Exception as e:  # Python raises on some garbage; a Go reader answers
        return "raises %s" % type(e).__name__


def main():
    keys = make_keys()
    cases = []

    def add(name, message, why, signer=None, body=None):
        cases.append(dict(name=name, body=body or fedmsg.encoding.dumps(message), why=why,
                          signer=signer))

    base = py_sign(envelope({"log": "hello", "n": 1, "f": 1.5, "u": "caf\u00e9 \u2603 \U0001F600"}), HOME, keys["app01"])
    add("plain rsa", base, "signed by app01 (RSA)", "app01")
    ed = py_sign(envelope({"build": {"id": 42, "ok": True}}, 2), HOME, keys["backend01"])
    add("plain ed25519", ed, "signed by backend01 (Ed25519)", "backend01")
    add("signing subkey", py_sign(envelope({"x": []}, 3), HOME, keys["sub01"]), "signed by sub01's signing subkey; identity is the primary fingerprint", "sub01")
    add("key not in gpg_keys", py_sign(envelope({"who": "?"}, 8), HOME, keys["unnamed01"]),
        "a keyring key that gpg_keys does not name: the signer is its fingerprint", keys["unnamed01"])
    add("plain dsa", py_sign(envelope({"old": "key"}, 9), HOME, keys["dsa01"]), "signed by a DSA key, as GnuPG 1 made them", "dsa01")
    add("msg null", py_sign(envelope(None, 4), HOME, keys["app01"]), "msg null is signed as the text null", "app01")
    add("msg string", py_sign(envelope("just text", 5), HOME, keys["app01"]), "msg may be any JSON", "app01")
    add("msg unsorted spacing", None, "the body's key order and spacing do not matter, the canonical text does", "app01",
        body=json.dumps(dict(reversed(list(base.items()))), indent=1))

    # Envelope-only changes: gpg signs msg alone.
    for field, value in [("timestamp", 1), ("msg_id", "2026-ffffffff-0000-4000-8000-000000000000"), ("i", 99),
                         ("topic", "org.gilmsg.dev.other.topic"), ("username", "mallory"),
                         ("gilmsg_version", "0.1.2"), ("seq_id", 7), ("certificate", "")]:
        m = dict(base, **{field: value})
        add("envelope %s changed" % field, m, "the envelope is not signed under gpg", "app01")
    m = dict(base)
    del m["crypto"]
    add("crypto dropped", m, "signature without crypto or certificate is gpg", "app01")
    m = dict(base)
    del m["crypto"]
    m["certificate"] = "AAAA"
    add("crypto dropped with certificate", m, "a certificate without crypto means x509")
    add("crypto x509", dict(base, crypto="x509"), "x509 is not accepted by this reader")
    add("crypto GPG", dict(base, crypto="GPG"), "backend names are case-sensitive")
    add("crypto null", dict(base, crypto=None), "null is not a backend")

    # Payload changes.
    for name, change in [("value", {"log": "bye"}), ("key added", {"extra": 1}), ("float as int", {"f": 1.5000001}),
                         ("unicode", {"u": "cafe \u2603 \U0001F600"})]:
        m = copy.deepcopy(base)
        m["msg"].update(change)
        add("msg %s changed" % name, m, "the payload is signed")
    m = copy.deepcopy(base)
    del m["msg"]["n"]
    add("msg key removed", m, "the payload is signed")
    m = copy.deepcopy(base)
    m["msg"] = [base["msg"]]
    add("msg wrapped", m, "the payload is signed")
    add("msg integer as float", None, "1.0 is not 1 in the canonical text",
        body=fedmsg.encoding.dumps(base).replace('"n":1', '"n":1.0'))

    # Signatures flipped, borrowed, and malformed.
    sig = raw_sig(base)
    for at, why in [(len(sig) - 10, "a bit of the RSA value"), (len(sig) // 2, "a bit in the middle"),
                    (12, "a bit in the hashed subpackets")]:
        flipped = bytearray(sig)
        flipped[at] ^= 0x01
        add("signature flipped at %d" % at, dict(base, signature=b64(bytes(flipped))), "flipped: " + why)
    edsig = raw_sig(ed)
    flipped = bytearray(edsig)
    flipped[-5] ^= 0x80
    add("ed25519 signature flipped", dict(ed, signature=b64(bytes(flipped))), "flipped Ed25519 signature")
    add("signature borrowed", dict(base, signature=ed["signature"]), "another message's signature by a trusted key")
    stranger_same_msg = py_sign(envelope(base["msg"]), STRANGER, keys["stranger"])
    add("signature by stranger", stranger_same_msg, "signed by a key not in the keyring (same user id as app01)")
    add("signature stranger borrowed", dict(ed, signature=stranger_same_msg["signature"]), "a stranger's signature")
    add("signature wrapped 76", dict(base, signature="\n".join(base["signature"][i:i + 76] for i in range(0, len(base["signature"]), 76)) + "\n"),
        "base64 wrapped as x509 does: newlines are ignored", "app01")
    add("signature empty", dict(base, signature=""), "empty signature")
    add("signature bad base64", dict(base, signature=base["signature"][:-2]), "bad padding")
    add("signature not base64", dict(base, signature="!!!!"), "no base64 at all")
    m = dict(base)
    del m["signature"]
    add("signature missing", m, "crypto gpg without signature")
    m = dict(base)
    del m["msg"]
    add("msg missing", m, "nothing to verify")
    add("signature null", dict(base, signature=None), "null signature")
    add("signature truncated", dict(base, signature=b64(sig[:len(sig) // 2])), "half a packet")
    add("signature twice", dict(base, signature=b64(sig + sig)), "the same good signature two times: gpg wants every one good", "app01")
    add("signature stranger then good", dict(base, signature=b64(raw_sig(stranger_same_msg) + sig)),
        "an unknown key's signature before a good one")

    text = fedmsg.encoding.dumps(base["msg"]).encode()
    armored = gpg(HOME, "--local-user", keys["app01"], "--armor", "--detach-sign", stdin=text)
    add("signature armored", dict(base, signature=b64(armored)), "an ASCII-armored detached signature: gpg reads armor too", "app01")
    textmode = gpg(HOME, "--local-user", keys["app01"], "--textmode", "--detach-sign", stdin=text)
    sha1 = gpg(HOME, "--local-user", keys["app01"], "--digest-algo", "SHA1", "--detach-sign", stdin=text)
    add("signature sha1 digest", dict(base, signature=b64(sha1)), "a SHA-1 digest, as old GnuPG defaults made", "app01")
    add("signature text mode", dict(base, signature=b64(textmode)), "a canonical-text (0x01) signature", "app01")
    inline = gpg(HOME, "--local-user", keys["app01"], "--sign", stdin=b'{"log":"other"}')
    add("signature inline signed message", dict(base, signature=b64(inline)),
        "an inline-signed message of other text in place of a detached signature")
    clear = gpg(HOME, "--local-user", keys["app01"], "--clearsign", stdin=b'{"log":"other"}')
    add("signature clearsigned message", dict(base, signature=b64(clear)), "a clearsigned message of other text")
    pubkey = gpg(HOME, "--export", keys["app01"])
    add("signature is a public key", dict(base, signature=b64(pubkey)), "a key, not a signature packet")
    keysig = gpg(HOME, "--export", keys["backend01"])
    add("signature is a key signature", dict(base, signature=b64(keysig[len(keysig) - 120:])), "tail of a key block")

    # Keys that Python accepts and a Go reader does not.
    add("key revoked", py_sign(envelope({"r": 1}, 6), HOME, keys["revoked01"]), "signed by a key revoked since: Python accepts it, gilmsg-go refuses (MIGRATING.md)")
    expired_env = envelope({"e": 1}, 7)
    expired_env["crypto"] = "gpg"
    sig_exp = gpg(HOME, "--local-user", keys["expired01"], "--detach-sign", faked="20200301T000000",
                  stdin=fedmsg.encoding.dumps(expired_env["msg"]).encode())
    add("key expired", dict(expired_env, signature=b64(sig_exp)), "signed in 2020 by a key that expired in 2020: Python accepts it, gilmsg-go refuses (MIGRATING.md)")

    # Revoke after signing; then judge everything against the final keyring.
    rev = open(os.path.join(HOME, "openpgp-revocs.d", keys["revoked01"] + ".rev"), "rb").read()
    gpg(HOME, "--import", stdin=rev.replace(b":-----BEGIN", b"-----BEGIN"))

    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "pubring.asc"), "wb") as f:
        f.write(gpg(HOME, "--armor", "--export"))
    with open(os.path.join(OUT, "pubring.gpg"), "wb") as f:
        f.write(gpg(HOME, "--export"))
    for name, home in [("app01", HOME), ("backend01", HOME), ("stranger", STRANGER)]:
        with open(os.path.join(OUT, name + ".sec.asc"), "wb") as f:
            f.write(gpg(home, "--armor", "--export-secret-keys", keys[name]))
    with open(os.path.join(OUT, "gpg_keys.json"), "w") as f:
        json.dump({n: keys[n] for n in keys if n not in ("stranger", "unnamed01")}, f, indent=1, sort_keys=True)
        f.write("\n")

    with open(os.path.join(OUT, "vectors.jsonl"), "w") as f:
        for c in cases:
            verdict = judge(c["body"], HOME)
            if c["signer"] is not None and verdict is not True:
                raise SystemExit("%s: expected Python to accept it, got %r" % (c["name"], verdict))
            line = dict(name=c["name"], topic=json.loads(c["body"])["topic"] if "topic" in json.loads(c["body"]) else "",
                        body=c["body"], valid_python=verdict, why=c["why"])
            line["valid"] = c["signer"] is not None
            line["signer"] = c["signer"] or ""
            f.write(json.dumps(line, sort_keys=True) + "\n")
            flag = "" if (verdict is True) == line["valid"] else "  <- differs"
            print("%-40s python=%-22s go=%s%s" % (c["name"], verdict, line["valid"], flag))
    subprocess.run(["gpgconf", "--homedir", HOME, "--kill", "gpg-agent"])
    subprocess.run(["gpgconf", "--homedir", STRANGER, "--kill", "gpg-agent"])


if __name__ == "__main__":
    main()
