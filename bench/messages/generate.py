#!/usr/bin/env python3
"""Regenerates alternative-40k.eml: José's Gmail-style reply (multipart/alternative,
quoted-printable UTF-8 text and HTML, a quoted thread), about 40 KB, CRLF line endings.
Deterministic (fixed seed), so the stored file can be checked against it."""
import quopri
import random

random.seed(7)
WORDS = ("the quarterly numbers look good and the optics team shipped the new lens coating "
         "ahead of schedule so we can confirm the order for Berlin and London next week "
         "please review the attached figures before our call on Thursday").split()
BOUNDARY = "000000000000b3e1a705f2c6d9a1"
ATTR = "On Wed, 25 Nov 2026 at 16:02, Bob Kelly"


def para(n):
    return " ".join(random.choice(WORDS) for _ in range(n)).capitalize() + "."


def qp(s):
    out = quopri.encodestring(s.encode("utf-8")).decode()
    return out.replace("\r\n", "\n").replace("\n", "\r\n")


def main():
    paras = [para(random.randint(30, 70)) for _ in range(56)]
    new, quoted = paras[:28], paras[28:]
    text = ["Hi Bob,", "", "Thanks for the update, see my notes below.", ""]
    for p in new:
        text += [p, ""]
    text.append(ATTR + " <bob@partner.example> wrote:")
    for p in quoted:
        text += ["> " + p, ">"]
    div = '<div style="font-family:Arial,sans-serif;font-size:11pt">%s</div><div><br></div>'
    html = ['<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head>',
            '<body><div dir="ltr"><div>Hi Bob,</div><div><br></div>',
            '<div>Thanks for the update, see my notes below.</div><div><br></div>']
    html += [div % p for p in new]
    html.append('</div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">' + ATTR +
                ' &lt;<a href="mailto:bob@partner.example">bob@partner.example</a>&gt; wrote:<br></div>')
    html.append('<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;'
                'border-left:1px solid rgb(204,204,204);padding-left:1ex">')
    html += [div % p for p in quoted]
    html.append('</blockquote></div></body></html>')
    msg = ("From: =?utf-8?q?Jos=C3=A9_M=C3=BCller?= <jose.mueller@lumen-optics.example>\r\n"
           "To: Bob Kelly <bob@partner.example>\r\n"
           "Subject: Re: Q4 order figures\r\n"
           "Date: Thu, 26 Nov 2026 09:14:03 +0100\r\n"
           "Message-ID: <CAbench40k.0001@mail.lumen-optics.example>\r\n"
           "In-Reply-To: <CAbob.0001@mail.partner.example>\r\n"
           "References: <CAbob.0001@mail.partner.example>\r\n"
           "MIME-Version: 1.0\r\n"
           f"Content-Type: multipart/alternative; boundary=\"{BOUNDARY}\"\r\n\r\n"
           f"--{BOUNDARY}\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\n"
           "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
           + qp("\r\n".join(text) + "\r\n") +
           f"\r\n--{BOUNDARY}\r\nContent-Type: text/html; charset=\"UTF-8\"\r\n"
           "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
           + qp("\r\n".join(html) + "\r\n") +
           f"\r\n--{BOUNDARY}--\r\n")
    with open("alternative-40k.eml", "w", newline="") as f:
        f.write(msg)
    print(len(msg))


if __name__ == "__main__":
    main()
