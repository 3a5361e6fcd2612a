#!/usr/bin/env python3
"""Check messages stamped with inline images, using Python's email package (an independent
parser). Run by tests/images_python.rs with a JSON manifest:

  [{"name": ..., "original": path, "stamped": path, "marker": str,
    "images": [{"cid": ..., "content_type": ..., "path": file with the image bytes}]}]

For each message: it parses without defects; the HTML part carrying the signature sits in a
multipart/related (directly, or through the multipart/alternative that is the related's
root) and every `cid:` of a signature image in it resolves to a part of that related whose
bytes decode to the original image; no signature image sits anywhere else; text/plain parts
are never moved into a related; every pre-existing part is unchanged (headers and decoded
content; the stamped text parts only gained the signature); the message's own header fields
keep their values and order. Prints one line per failure; exits 1 if any.
"""

import email
import email.policy
import json
import re
import sys

CID_RE = re.compile(r"""cid:([^"'\s>)]+)""", re.IGNORECASE)


def leaves(msg):
    return [p for p in msg.walk() if not p.is_multipart()]


def parents(msg):
    out = {}

    def visit(part):
        if part.is_multipart():
            for child in part.get_payload():
                out[id(child)] = part
                visit(child)

    visit(msg)
    return out


def content_id(part):
    cid = part.get("Content-ID")
    return str(cid).strip().strip("<>") if cid is not None else None


def all_defects(msg):
    return [(type(d).__name__) for p in msg.walk() for d in p.defects]


def text_of(part):
    try:
        return part.get_content()
    except Exception:  # undecodable charset: compare bytes instead
        return part.get_payload(decode=True)


def top_fields(msg):
    skip = ("content-", "mime-version", "x-sigstamp")
    return [(k.lower(), str(v)) for k, v in msg.items() if not k.lower().startswith(skip)]


def part_fields(part):
    # Stamping may change the charset and the transfer encoding of a stamped part only.
    keep = ("content-type", "content-transfer-encoding")
    return [(k.lower(), str(v)) for k, v in part.items() if k.lower() not in keep]


def check(case):
    errors = []
    original = open(case["original"], "rb").read()
    stamped = open(case["stamped"], "rb").read()
    marker = case["marker"]
    images = {i["cid"]: i for i in case["images"]}
    for i in images.values():
        i["bytes"] = open(i["path"], "rb").read()

    policy = email.policy.default
    a = email.message_from_bytes(original, policy=policy)
    b = email.message_from_bytes(stamped, policy=policy)
    if not any(p.get_content_type() == "text/html" for p in leaves(a)):
        # Python cannot see the original's structure (e.g. Outlook Express's unquoted
        # boundary with "=" in it): nothing to compare with.
        return None
    new_defects = set(all_defects(b)) - set(all_defects(a))
    if new_defects:
        errors.append(f"parse defects: {sorted(new_defects)}")
    if top_fields(a) != top_fields(b):
        errors.append("top-level header fields changed or moved")

    up = parents(b)
    html = [p for p in leaves(b)
            if p.get_content_type() == "text/html" and marker in str(text_of(p))]
    if len(html) != 1:
        errors.append(f"{len(html)} HTML parts carry the signature")
        return errors
    html = html[0]
    holder = up.get(id(html))
    if holder is not None and holder.get_content_type() == "multipart/alternative":
        holder = up.get(id(holder))
    if holder is None or holder.get_content_type() != "multipart/related":
        errors.append("the stamped HTML is not inside a multipart/related")
        return errors
    siblings = holder.get_payload()
    refs = set(CID_RE.findall(str(text_of(html))))
    ours = refs & set(images)
    if not ours:
        errors.append("the HTML references none of the signature images")
    for cid in sorted(ours):
        found = [s for s in siblings if content_id(s) == cid]
        if len(found) != 1:
            errors.append(f"cid:{cid}: {len(found)} parts in the related")
            continue
        part = found[0]
        if part.get_content_type() != images[cid]["content_type"]:
            errors.append(f"cid:{cid}: type {part.get_content_type()}")
        if part.get_payload(decode=True) != images[cid]["bytes"]:
            errors.append(f"cid:{cid}: bytes differ from the image")
    for p in b.walk():
        if content_id(p) in images and p not in siblings:
            errors.append(f"signature image {content_id(p)} outside the HTML's related")
    for p in leaves(b):
        if p.get_content_type() == "text/plain" and up.get(id(p)) is not None \
                and up[id(p)].get_content_type() == "multipart/related" \
                and up[id(p)] is holder and marker in str(text_of(p)):
            errors.append("a text/plain part carries the signature inside the related")

    # Pre-existing parts, in order: the stamped leaves minus the added images.
    before = leaves(a)
    after = [p for p in leaves(b) if content_id(p) not in images or
             any(content_id(q) == content_id(p) for q in before)]
    if len(before) != len(after):
        errors.append(f"{len(before)} parts became {len(after)} (images aside)")
        return errors
    for n, (pa, pb) in enumerate(zip(before, after)):
        ta, tb = text_of(pa), text_of(pb)
        if pa is a:
            # A single-part message: its Content-* fields moved into the inner part.
            fa = [f for f in pa.items() if f[0].lower().startswith("content-")
                  and f[0].lower() not in ("content-type", "content-transfer-encoding")]
            fb = [f for f in pb.items() if f[0].lower().startswith("content-")
                  and f[0].lower() not in ("content-type", "content-transfer-encoding")]
            if [(k.lower(), str(v)) for k, v in fa] != [(k.lower(), str(v)) for k, v in fb]:
                errors.append("the moved Content-* fields differ")
        elif part_fields(pa) != part_fields(pb):
            errors.append(f"part {n}: header fields changed")
        if pa.get_content_type() != pb.get_content_type():
            errors.append(f"part {n}: {pa.get_content_type()} became {pb.get_content_type()}")
        if ta == tb:
            continue
        if isinstance(ta, str) and isinstance(tb, str) and marker in tb and marker not in ta:
            # A stamped body: the old text is the new one minus one inserted run.
            k = 0
            while k < min(len(ta), len(tb)) and ta[k] == tb[k]:
                k += 1
            if not tb[k:].endswith(ta[k:]):
                errors.append(f"part {n}: text around the signature changed")
            continue
        errors.append(f"part {n} ({pa.get_content_type()}): content changed")
    return errors


def main():
    cases = json.load(open(sys.argv[1]))
    failed = skipped = 0
    for case in cases:
        try:
            errors = check(case)
        except Exception as e:  # a crash is a failure of that message, not of the run
            errors = [f"exception: {e!r}"]
        if errors is None:
            print(f"{case['name']}: skipped, Python does not parse the original's structure")
            skipped += 1
            continue
        for e in errors:
            print(f"{case['name']}: {e}")
        failed += bool(errors)
    print(f"checked {len(cases) - skipped} messages, {failed} failed, {skipped} skipped")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
