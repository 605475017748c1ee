#!/usr/bin/env python3
"""An independent verifier of FemtoClaw inclusion proofs (C2SP tlog-proof@v1 with a C2SP
signed-note checkpoint), written from the specifications alone: RFC 9162 section 2.1.3.2 for the
inclusion proof, C2SP tlog-checkpoint and signed-note for the note, Ed25519 from the
`cryptography` package. It shares no code with the Rust implementation.

Usage: verify_tlog_proof.py PROOF_FILE VERIFIER_KEY   (exit 0 when the proof verifies)
"""

import base64
import hashlib
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def fail(why):
    print(f"proof does not verify: {why}", file=sys.stderr)
    sys.exit(1)


def parse_key(vkey):
    name, key_id, key = vkey.strip().split("+", 2)
    raw = base64.b64decode(key)
    if raw[0] != 1 or len(raw) != 33:
        fail("not an Ed25519 verifier key")
    if hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4] != bytes.fromhex(key_id):
        fail("key id does not match the key")
    return name, bytes.fromhex(key_id), Ed25519PublicKey.from_public_bytes(raw[1:])


def open_note(note, key):
    name, key_id, public = key
    body, sep, signatures = note.partition("\n\n")
    if not sep:
        fail("note has no signature block")
    text = body + "\n"
    for line in signatures.splitlines():
        if not line.startswith("\u2014 "):
            continue
        signer, _, sig = line[2:].partition(" ")
        blob = base64.b64decode(sig)
        if signer == name and blob[:4] == key_id:
            try:
                public.verify(blob[4:], text.encode())
                return text
            except InvalidSignature:
                fail("bad checkpoint signature")
    fail("no signature by the pinned key")


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(index, size, leaf, proof):
    """RFC 9162 2.1.3.2."""
    if index >= size:
        fail("index beyond the tree")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            fail("proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        fail("proof too short")
    return r


def main():
    text = open(sys.argv[1], encoding="utf-8").read()
    key = parse_key(sys.argv[2])
    head, sep, note = text.partition("\n\n")
    if not sep:
        fail("no checkpoint after the proof")
    lines = head.splitlines()
    if lines[0] != "c2sp.org/tlog-proof@v1":
        fail("not a tlog-proof@v1")
    extra = index = None
    hashes = []
    for line in lines[1:]:
        if line.startswith("extra "):
            extra = base64.b64decode(line[6:])
        elif line.startswith("index "):
            index = int(line[6:])
        else:
            hashes.append(base64.b64decode(line))
    if extra is None or index is None:
        fail("missing extra or index line")
    body = open_note(note, key).splitlines()
    size, root = int(body[1]), base64.b64decode(body[2])
    if root_from_inclusion(index, size, leaf_hash(extra), hashes) != root:
        fail("inclusion proof does not lead to the checkpoint's root")
    print(f"ok: entry {index} is in the tree of size {size} of {body[0]}")


if __name__ == "__main__":
    main()
