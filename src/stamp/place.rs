//! Where the signature goes: above the quoted earlier message of a reply or forward, else at
//! the end of the author's text. Works on decoded bytes of any ASCII-compatible charset.

/// Case-insensitive search of an ASCII `needle` in `hay` from `from`.
pub fn find_ci(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = needle.first()?;
    let (lo, up) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    let mut i = from;
    while i + needle.len() <= hay.len() {
        let rel = memchr::memchr2(lo, up, &hay[i..=hay.len() - needle.len()])?;
        let at = i + rel;
        if hay[at..at + needle.len()].eq_ignore_ascii_case(needle) {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// The last case-insensitive occurrence of `needle`.
fn rfind_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle.first()?;
    let (lo, up) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    let mut end = hay.len().checked_sub(needle.len())? + 1;
    while let Some(at) = memchr::memrchr2(lo, up, &hay[..end]) {
        if hay[at..at + needle.len()].eq_ignore_ascii_case(needle) {
            return Some(at);
        }
        end = at;
    }
    None
}

/// The `<` that opens the tag containing `pos`.
fn tag_start(html: &[u8], pos: usize) -> usize {
    memchr::memrchr(b'<', &html[..pos]).unwrap_or(pos)
}

/// Attribute-style markers of a quoted message, found inside the tag that carries them.
/// The signature goes before that tag.
const HTML_TAG_MARKERS: &[&[u8]] = &[
    b"divRplyFwdMsg",           // Outlook on the web / new Outlook
    b"class=\"gmail_quote",     // Gmail
    b"class=gmail_quote",       //
    b"class=\"moz-cite-prefix", // Thunderbird
    b"class=moz-cite-prefix",
    b"type=\"cite\"", // Apple Mail, Open-Xchange, Thunderbird
    b"type=cite",
    b"border-top:solid #E1E1E1", // Outlook desktop reply header block
    b"border-top:solid #B5C4DF",
    b"border-top: solid #E1E1E1",
    b"id=\"zwchr\"",                                 // Zimbra
    b"yahoo_quoted",        // Yahoo (class and id, often with a "ydp…" prefix)
    b"id=\"AOLMsgPart",     // AOL
    b"id=\"stopSpelling\"", // Hotmail
    b"class=\"OutlookMessageHeader", // Outlook 2003
    b"OLK_SRC_BODY_SECTION", // Outlook for Mac
    b"class=\"protonmail_quote", // Proton Mail
    b"class=\"zmail_extra", // Zoho Mail
    b"id=\"mail-editor-reference-message-container", // new Outlook (Monarch), Outlook mobile
    b"class=\"moz-forward-container", // Thunderbird forward
    b"-----Original Message-----", // Outlook plain-style separator written into HTML
    b"----- Original Message -----",
];

/// Outlook desktop's bold reply header starts with one of these (English, German, French,
/// Spanish/Portuguese, Dutch, Italian); it is checked further on a match.
const BOLD_FROM: &[&[u8]] = &[
    b"From:</",
    b"Von:</",
    b"De:</",
    b"De :</",
    b"De&nbsp;:</",
    b"De\xc2\xa0:</",
    b"Van:</",
    b"Da:</",
];

/// Every marker (and [`BOLD_FROM`]) in ASCII lower case, in one automaton run over the HTML
/// in ASCII lower case: a single pass finds the earliest quote, whatever the client and
/// whatever the case. (Searching a lower-cased copy, rather than asking the automaton to
/// ignore case, keeps its vectorised prefilter: several times faster on a 20 KB body.)
fn html_markers() -> &'static aho_corasick::AhoCorasick {
    static AC: std::sync::OnceLock<aho_corasick::AhoCorasick> = std::sync::OnceLock::new();
    AC.get_or_init(|| {
        aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(
                HTML_TAG_MARKERS
                    .iter()
                    .chain(BOLD_FROM)
                    .map(|m| m.to_ascii_lowercase()),
            )
            .expect("static markers")
    })
}

/// How many quote markers (or closing tags) are looked at before giving up on them.
const MAX_HIDDEN_CHECKS: usize = 32;

/// Where in an HTML body the signature goes (a byte offset).
pub fn html_position(html: &[u8]) -> usize {
    let body_open = open_tag(html, b"body").unwrap_or(0);
    // Each hidden-check looks back over the HTML: bounded, so odd input stays linear.
    let mut checks = 0;
    // Same length and offsets as `html`: only ASCII letters change.
    let lower = html.to_ascii_lowercase();
    for m in html_markers().find_iter(&lower) {
        // Class names in the head's CSS, commented-out markup and scripts are not the quote.
        if m.start() < body_open {
            continue;
        }
        checks += 1;
        if checks > MAX_HIDDEN_CHECKS {
            break;
        }
        if hidden(html, m.start()) {
            continue;
        }
        let Some(marker) = HTML_TAG_MARKERS.get(m.pattern().as_usize()) else {
            match outlook_bold_header(html, m.start(), m.end()) {
                Some(at) => return at,
                None => continue,
            }
        };
        let start = tag_start(html, m.start());
        let cite = marker.starts_with(b"type=") || find_ci(marker, b"moz-cite-prefix", 0).is_some();
        if cite && answered_below(html, start) {
            // Bottom-posting (Thunderbird's default) or inline answers: the author's text
            // follows the quote, so the signature goes after it, at the end.
            break;
        }
        return if marker.eq_ignore_ascii_case(b"divRplyFwdMsg") {
            include_preceding_hr(html, start)
        } else if marker.starts_with(b"type=") {
            include_preceding_attribution(html, start)
        } else {
            start
        };
    }
    html_end(html)
}

/// The very end of an HTML body: before `</body>` (else `</html>`, else the last byte), for
/// what goes after the quoted thread (a template's bottom part).
pub fn html_end(html: &[u8]) -> usize {
    closing_tag(html, b"body")
        .or_else(|| closing_tag(html, b"html"))
        .unwrap_or(html.len())
}

/// Whether visible text follows the end of the first cited `<blockquote>` at or after `from`.
fn answered_below(html: &[u8], from: usize) -> bool {
    blockquote_end(html, from).is_some_and(|close| {
        let end = closing_tag(&html[close..], b"body").map_or(html.len(), |e| close + e);
        // The author's own client signature placed below the quote is not an answer.
        let end =
            find_ci(&html[..end], b"moz-signature", close).map_or(end, |s| tag_start(html, s));
        visible_text(&html[close..end])
    })
}

/// Where the first `<blockquote>` at or after `from` closes (its `</blockquote`).
fn blockquote_end(html: &[u8], from: usize) -> Option<usize> {
    let open = find_ci(html, b"<blockquote", from)?;
    // The matching close: count nested blockquotes (each search resumes where it stopped).
    let mut depth = 1usize;
    let mut next_open = find_ci(html, b"<blockquote", open + 1);
    let mut next_close = find_ci(html, b"</blockquote", open + 1)?;
    let close = loop {
        match next_open {
            Some(o) if o < next_close => {
                depth += 1;
                next_open = find_ci(html, b"<blockquote", o + 1);
            }
            _ => {
                depth -= 1;
                if depth == 0 {
                    break next_close;
                }
                next_close = find_ci(html, b"</blockquote", next_close + 1)?;
            }
        }
    };
    Some(close)
}

/// Whether `html` shows any text: something outside tags and comments other than whitespace
/// and `&nbsp;`.
fn visible_text(html: &[u8]) -> bool {
    let mut i = 0;
    while i < html.len() {
        match html[i] {
            b'<' if html[i..].starts_with(b"<!--") => {
                i = memchr::memmem::find(&html[i..], b"-->").map_or(html.len(), |e| i + e + 3);
            }
            b'<' => i = memchr::memchr(b'>', &html[i..]).map_or(html.len(), |e| i + e + 1),
            b'&' if html[i..].len() >= 6 && html[i..i + 6].eq_ignore_ascii_case(b"&nbsp;") => {
                i += 6
            }
            b if b.is_ascii_whitespace() => i += 1,
            // U+00A0 in UTF-8.
            0xC2 if html.get(i + 1) == Some(&0xA0) => i += 2,
            _ => return true,
        }
    }
    false
}

/// Roundcube, Fastmail and others write "On …, Bob wrote:" in a paragraph just above the
/// `<blockquote type="cite">`: that line belongs to the quote.
fn include_preceding_attribution(html: &[u8], start: usize) -> usize {
    let window_start = start.saturating_sub(400);
    let before = &html[window_start..start];
    let text_end = before
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    // The attribution's text ends with "wrote:" (or a translation), maybe followed by tags.
    let mut end = text_end;
    while end > 0 && before[end - 1] == b'>' {
        match memchr::memrchr(b'<', &before[..end - 1]) {
            Some(open) => {
                end = before[..open]
                    .iter()
                    .rposition(|b| !b.is_ascii_whitespace())
                    .map_or(0, |p| p + 1)
            }
            None => return start,
        }
    }
    let text = &before[..end];
    // "…, Bob wrote:", "Am …, schrieb Bob:", "Le … a écrit :": ends with a colon, and the
    // line (after its last tag) names the verb.
    let line = &text[memchr::memrchr(b'>', text).map_or(0, |p| p + 1)..];
    let attribution = text.ends_with(b":")
        && [
            b"wrote".as_slice(),
            b"schrieb",
            b"crit",
            b"escribi",
            b"scritto",
            b"schreef",
            // Apple Mail forwards: "Begin forwarded message:" above the cited message.
            b"forwarded message",
            b"weitergeleiteten nachricht",
            b"message r\xc3\xa9exp\xc3\xa9di",
            b"mensaje reenviado",
            b"messaggio inoltrato",
            b"doorgestuurd bericht",
        ]
        .iter()
        .any(|w| find_ci(line, w, 0).is_some());
    if !attribution {
        return start;
    }
    // Back to the block that holds it.
    let p = rfind_ci(text, b"<p");
    let d = rfind_ci(text, b"<div");
    match p.max(d) {
        Some(at) => window_start + at,
        None => start,
    }
}

/// OWA puts `<hr …>` right before the reply header: the signature goes above the rule.
fn include_preceding_hr(html: &[u8], start: usize) -> usize {
    let before = &html[..start];
    let trimmed = before
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    if trimmed > 0 && before[trimmed - 1] == b'>' {
        let open = tag_start(html, trimmed - 1);
        if html[open..].len() > 3 && html[open + 1..open + 3].eq_ignore_ascii_case(b"hr") {
            return open;
        }
    }
    start
}

/// Outlook desktop without the border block: `<b>From:</b> … <b>Sent:</b>` (possibly with a
/// `<span>` inside the bold). "From:</" was found at `at..end`; the signature goes before the
/// paragraph holding it.
fn outlook_bold_header(html: &[u8], at: usize, end: usize) -> Option<usize> {
    let after = &html[end - 2..html.len().min(end + 13)];
    let bold = after.starts_with(b"</b>")
        || after.starts_with(b"</B>")
        || after.to_ascii_lowercase().starts_with(b"</span></b>");
    if !bold {
        return None;
    }
    let window = &html[at..html.len().min(at + 2000)];
    let has_next = [
        b"Sent:</".as_slice(),
        b"Date:</",
        b"Gesendet:</",
        b"Envoy\xc3\xa9:</",
        b"Envoy\xc3\xa9 :</",
        b"Envoy\xc3\xa9&nbsp;:</",
        b"Envoy&eacute;&nbsp;:</",
        b"Envoy&eacute;:</",
        b"Envoy\xe9:</",
        b"Envoy\xe9&nbsp;:</",
        b"Enviado:</",
        b"Enviada:</",
        b"Verzonden:</",
        b"Inviato:</",
        b"Datum:</",
        b"Data:</",
    ]
    .iter()
    .any(|n| find_ci(window, n, 0).is_some());
    if !has_next {
        return None;
    }
    let p = rfind_ci(&html[..at], b"<p");
    let d = rfind_ci(&html[..at], b"<div");
    p.max(d).or(Some(tag_start(html, at)))
}

/// The last `</name` followed by `>` or whitespace.
fn closing_tag(html: &[u8], name: &[u8]) -> Option<usize> {
    let mut end = html.len();
    let mut checks = 0;
    loop {
        let at = rfind_ci(&html[..end], b"</")?;
        let rest = &html[at + 2..];
        let rest = &rest[rest
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(rest.len())..];
        if rest.len() >= name.len()
            && rest[..name.len()].eq_ignore_ascii_case(name)
            && rest
                .get(name.len())
                .is_none_or(|b| *b == b'>' || b.is_ascii_whitespace())
        {
            checks += 1;
            if checks > MAX_HIDDEN_CHECKS || !in_comment(html, at) {
                return Some(at);
            }
        }
        end = at;
    }
}

/// Whether `at` lies inside an HTML comment (`<!-- … </body> … -->` after the real end of the
/// body, or an Outlook conditional comment): a closing tag there is not the real one.
fn in_comment(html: &[u8], at: usize) -> bool {
    let before = &html[..at];
    last(before, b"<!--")
        .is_some_and(|open| memchr::memmem::find(&before[open + 4..], b"-->").is_none())
}

/// The last occurrence of `needle` (one without a border, such as `<!--` or `<style`, whose
/// occurrences cannot overlap), by a forward scan: memchr's forward search has a SIMD
/// prefilter, its reverse one does not, and this runs over the whole text before a marker.
fn last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find_iter(hay, needle).last()
}

/// Whether `at` lies in a comment or inside a `<style>` or `<script>` element.
fn hidden(html: &[u8], at: usize) -> bool {
    let before = &html[..at];
    // Lower- or upper-case tags (SIMD substring search; a '<' scan would stop at every tag).
    let unclosed = |lower: &[u8], upper: &[u8], close: &[u8]| {
        let open = last(before, lower).max(last(before, upper));
        open.is_some_and(|o| find_ci(before, close, o).is_none())
    };
    in_comment(html, at)
        || unclosed(b"<style", b"<STYLE", b"</style")
        || unclosed(b"<script", b"<SCRIPT", b"</script")
}

/// The first `<name` followed by `>`, `/` or whitespace.
fn open_tag(html: &[u8], name: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = find_ci(html, b"<", from) {
        let rest = &html[at + 1..];
        if rest.len() > name.len()
            && rest[..name.len()].eq_ignore_ascii_case(name)
            && (rest[name.len()] == b'>'
                || rest[name.len()] == b'/'
                || rest[name.len()].is_ascii_whitespace())
        {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Where in a text body the signature goes: the start of the line that opens the quoted
/// message, or `None` for the end of the body.
pub fn text_position(text: &[u8]) -> Option<usize> {
    // Lazy: a reply's quote is usually near the top, so most of a long body is never split.
    let mut prev_nonblank: Option<(usize, &[u8])> = None;
    for (start, line) in lines(text) {
        let t = line.trim_ascii();
        let rest = || lines(&text[start + line.len()..]).map(|(_, l)| l.trim_ascii());
        if t.starts_with(b">") {
            // The author answers below or between the quoted lines (bottom-posting, inline
            // replies): the signature goes after the author's last words, at the end.
            if interleaved(&text[start..]) {
                return None;
            }
            // An attribution line ("X wrote:") right above the quote belongs to it.
            return Some(match prev_nonblank {
                Some((ps, pl)) if pl.ends_with(b":") => ps,
                _ => start,
            });
        }
        if is_attribution(t, rest().next()) {
            let after = &text[start + line.len()..];
            let quote = lines(after).find(|(_, l)| l.trim_ascii().starts_with(b">"));
            if quote.is_some_and(|(q, _)| interleaved(&after[q..])) {
                return None;
            }
            return Some(start);
        }
        if is_separator(t) || is_header_block(t, rest().take(4)) {
            return Some(start);
        }
        if t.len() >= 20 && t.iter().all(|b| *b == b'_') {
            let next = rest().find(|l| !l.is_empty());
            if next.is_some_and(|n| starts_ci(n, b"from:") || starts_ci(n, b"*from:*")) {
                return Some(start);
            }
        }
        if !t.is_empty() {
            prev_nonblank = Some((start, t));
        }
    }
    None
}

/// Whether unquoted text follows the quote that starts `rest` (the author's own "-- "
/// signature block placed below the quote does not count).
fn interleaved(rest: &[u8]) -> bool {
    lines(rest)
        .map(|(_, l)| l.strip_suffix(b"\n").unwrap_or(l))
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| *l != b"-- ")
        .any(|l| {
            let t = l.trim_ascii();
            !t.is_empty() && !t.starts_with(b">")
        })
}

fn lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= text.len() {
            return None;
        }
        let end = memchr::memchr(b'\n', &text[pos..]).map_or(text.len(), |i| pos + i + 1);
        let item = (pos, &text[pos..end]);
        pos = end;
        Some(item)
    })
}

fn starts_ci(s: &[u8], p: &[u8]) -> bool {
    s.len() >= p.len() && s[..p.len()].eq_ignore_ascii_case(p)
}

fn ends_ci(s: &[u8], p: &[u8]) -> bool {
    s.len() >= p.len() && s[s.len() - p.len()..].eq_ignore_ascii_case(p)
}

/// "On <date>, <name> wrote:" (possibly wrapped onto the next line), and its translations.
fn is_attribution(line: &[u8], next: Option<&[u8]>) -> bool {
    const FORMS: &[(&[u8], &[u8])] = &[
        (b"on ", b"wrote:"),
        (b"am ", b"schrieb:"),
        (b"am ", b"geschrieben:"),
        (b"le ", b"crit :"),
        (b"le ", b"crit:"),
        (b"el ", b"escribi\xc3\xb3:"),
        (b"op ", b"geschreven:"),
        (b"il ", b"scritto:"),
        (b"em ", b"escreveu:"),
    ];
    FORMS.iter().any(|(start, end)| {
        starts_ci(line, start)
            && (ends_ci(line, end) || next.is_some_and(|n| ends_ci(n, end) && n.len() < 200))
    })
}

/// Apple Mail's forward line, per language.
const APPLE_FORWARD: &[&[u8]] = &[
    b"begin forwarded message:",
    b"anfang der weitergeleiteten nachricht:",
    b"d\xc3\xa9but du message r\xc3\xa9exp\xc3\xa9di\xc3\xa9 :",
    b"inicio del mensaje reenviado:",
    b"inizio messaggio inoltrato:",
    b"begin doorgestuurd bericht:",
];

/// "-----Original Message-----" and friends, forward lines included.
fn is_separator(line: &[u8]) -> bool {
    const NAMES: &[&[u8]] = &[
        b"original message",
        b"urspr\xc3\xbcngliche nachricht",
        b"message d'origine",
        b"mensaje original",
        b"messaggio originale",
        b"oorspronkelijk bericht",
    ];
    is_forward_line(line) || separator_named(line, NAMES)
}

/// The name in a forward's separator line ("---------- Forwarded message ---------"), as
/// Gmail and others write it per language.
const FORWARDED: &[&[u8]] = &[
    b"forwarded message",
    b"weitergeleitete nachricht",
    b"message transf\xc3\xa9r\xc3\xa9",
    b"mensaje reenviado",
    b"messaggio inoltrato",
    b"doorgestuurd bericht",
    b"mensagem encaminhada",
];

/// Whether a line opens a forwarded message: a forward separator, or Apple Mail's "Begin
/// forwarded message:" (and its translations).
fn is_forward_line(line: &[u8]) -> bool {
    APPLE_FORWARD.iter().any(|p| starts_ci(line, p)) || separator_named(line, FORWARDED)
}

/// `--…-- name --…--` with one of `names`.
fn separator_named(line: &[u8], names: &[&[u8]]) -> bool {
    let core = trim_dashes(line).trim_ascii();
    line.starts_with(b"--") && names.iter().any(|n| core.eq_ignore_ascii_case(n))
}

fn trim_dashes(line: &[u8]) -> &[u8] {
    let s = line.iter().position(|b| *b != b'-').unwrap_or(line.len());
    let e = line.iter().rposition(|b| *b != b'-').map_or(s, |p| p + 1);
    &line[s..e.max(s)]
}

/// Whether the quoted message the placement finds in a text body is a forward.
pub fn text_is_forward(text: &[u8]) -> bool {
    text_position(text).is_some_and(|at| {
        lines(&text[at..])
            .map(|(_, l)| l.trim_ascii())
            .find(|l| !l.is_empty())
            .is_some_and(is_forward_line)
    })
}

/// Whether the quoted message the placement finds in an HTML body is a forward: Thunderbird's
/// forward container, or a forward line as the quote's first text.
pub fn html_is_forward(html: &[u8]) -> bool {
    let at = html_position(html);
    if at >= html_end(html) {
        return false;
    }
    let head = &html[at..html.len().min(at + 4096)];
    let tag_end = memchr::memchr(b'>', head).unwrap_or(head.len());
    if find_ci(&head[..tag_end], b"moz-forward-container", 0).is_some() {
        return true;
    }
    let text = visible_lines(head);
    let first = lines(&text)
        .map(|(_, l)| l.trim_ascii())
        .find(|l| !l.is_empty())
        .is_some_and(is_forward_line);
    first
}

/// The text of an HTML fragment, a line per tag (entities other than `&nbsp;` kept as they
/// are): enough to read the first words of a quote.
fn visible_lines(html: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(html.len() / 2);
    let mut i = 0;
    while i < html.len() {
        match html[i] {
            b'<' => {
                i = memchr::memchr(b'>', &html[i..]).map_or(html.len(), |e| i + e + 1);
                out.push(b'\n');
            }
            b'&' if html[i..].len() >= 6 && html[i..i + 6].eq_ignore_ascii_case(b"&nbsp;") => {
                out.push(b' ');
                i += 6;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The quoted part of an HTML body: from the quote the placement finds to the end; for a
/// bottom-posted or inline reply, from the first `<blockquote`. Empty without a quote.
pub fn quoted_html(html: &[u8]) -> &[u8] {
    let at = html_position(html);
    if at < html_end(html) {
        return &html[at..];
    }
    find_ci(html, b"<blockquote", 0).map_or(&[], |q| &html[q..])
}

/// The quoted part of a text body: from the quote the placement finds to the end; for a
/// bottom-posted or inline reply, the `>` lines.
pub fn quoted_text(text: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if let Some(at) = text_position(text) {
        return std::borrow::Cow::Borrowed(&text[at..]);
    }
    let mut out = Vec::new();
    for (_, l) in lines(text).filter(|(_, l)| l.trim_ascii().starts_with(b">")) {
        out.extend_from_slice(l);
    }
    std::borrow::Cow::Owned(out)
}

/// Outlook's plain-text reply header: "From: …" then "Sent: …" / "Date: …" within a few
/// lines, in the languages Outlook writes it in ("De : …" / "Envoyé : …" in French).
fn is_header_block<'a>(line: &[u8], mut next: impl Iterator<Item = &'a [u8]>) -> bool {
    const FROM: &[&[u8]] = &[
        b"from",
        b"von",
        b"de",
        b"van",
        b"da",
        b"fr\xc3\xa5n",
        b"fr\xe5n",
        b"fra",
    ];
    const SENT: &[&[u8]] = &[
        b"sent",
        b"date",
        b"gesendet",
        b"datum",
        b"envoy\xc3\xa9",
        b"envoy\xe9",
        b"enviado",
        b"enviada",
        b"verzonden",
        b"inviato",
        b"data",
        b"skickat",
        b"sendt",
    ];
    header_label(line, FROM) && next.any(|t| header_label(t, SENT))
}

/// Whether `line` starts with one of `names`, optionally in bold (`*From:*`), then a colon
/// (French puts a space or a no-break space before it).
fn header_label(line: &[u8], names: &[&[u8]]) -> bool {
    let line = line.strip_prefix(b"*").unwrap_or(line);
    names.iter().any(|n| {
        if !starts_ci(line, n) {
            return false;
        }
        let rest = &line[n.len()..];
        let rest = rest.strip_prefix(b"\xc2\xa0").unwrap_or(rest);
        let rest = rest.strip_prefix(b" ").unwrap_or(rest);
        rest.starts_with(b":")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_is_rfind() {
        for (hay, needle) in [
            (&b"a<!--b<!--c"[..], &b"<!--"[..]),
            (b"<style><STYLE><style", b"<style"),
            (b"none here", b"<script"),
            (b"", b"<!--"),
        ] {
            assert_eq!(last(hay, needle), memchr::memmem::rfind(hay, needle));
        }
    }

    #[test]
    fn html_table() {
        let cases: &[(&str, &str)] = &[
            // (html with | where the signature must go)
            ("<html><body>Hi|</body></html>", "Gmail-less, before </body>"),
            ("<html><BODY>Hi|</BODY ></html>", "upper case"),
            ("<p>Hi</p>|", "no body, no html: at the end"),
            ("<div>Hi</div>|</html>", "before </html>"),
            ("<div>Hi</div>|<div class=\"gmail_quote\">On x wrote:<blockquote>q</blockquote></div></body>", "gmail"),
            ("<div>Hi</div>|<div class=\"gmail_quote gmail_quote_container\"><div dir=ltr class=\"gmail_attr\">On</div></div>", "gmail container"),
            ("<div>Hi</div>|<hr style=\"display:inline-block\" tabindex=\"-1\">\n<div id=\"divRplyFwdMsg\" dir=\"ltr\"><b>From:</b></div>", "owa"),
            ("<div>Hi</div>|<blockquote type=\"cite\">q</blockquote></body>", "apple"),
            ("<p>Hi</p>\n|<p>On 2026-03-02 09:00, Bob wrote:</p>\n<blockquote type=\"cite\" style=\"padding\">q</blockquote>", "roundcube attribution"),
            ("<p>Hi</p>|<div>Am 02.03.2026 schrieb Bob:<br></div><blockquote type=\"cite\">q</blockquote>", "attribution with a trailing tag"),
            ("<div>Hi</div>|<div class=\"protonmail_quote\">------- Original Message -------</div>", "proton"),
            ("<p>Hi</p>|<div class=\"moz-cite-prefix\">On x wrote:</div><blockquote type=\"cite\">q</blockquote>", "thunderbird"),
            ("<p>Hi</p>|<div style=\"border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in\"><p><b>From:</b> x</p></div>", "outlook border"),
            ("<p>Hi</p>|<p class=MsoNormal><b><span lang=EN-US>From:</span></b><span> x<br><b>Sent:</b> y</span></p></body>", "outlook bold"),
            ("<p>Hi</p>|</body></html><!-- </body> -->", "closing tag in a trailing comment"),
            ("<p>Hi</p><!--[if mso]></body><![endif]-->|</body>", "closing tag in a conditional comment"),
            ("<p>Hi</p>|<div id=\"mail-editor-reference-message-container\"><hr><div><b>From:</b> x<br><b>Sent:</b> y</div></div>", "new Outlook"),
            ("<p>Hi</p>|<p><b>Da:</b> x<br><b>Inviato:</b> y</p>", "Outlook bold, Italian"),
            ("<p>Hi</p><p>Der <b>Von:</b> Plan</p>|</body>", "bold Von: without a date is text"),
            ("<body><div class=\"moz-cite-prefix\">On x, Bob wrote:<br></div><blockquote type=\"cite\">q<blockquote type=\"cite\">qq</blockquote></blockquote><p>My answer.</p>|</body>", "Thunderbird bottom-posting"),
            ("<body><blockquote type=\"cite\">q1</blockquote>a1<blockquote type=\"cite\">q2</blockquote>a2|</body>", "inline answers"),
            ("<body><p>Answer</p>|<div class=\"moz-cite-prefix\">On x:</div><blockquote type=\"cite\">q</blockquote><br><div class=\"moz-signature\">-- <br>Ana</div></body>", "own signature below the quote"),
            ("<body><p>Hi</p>|<blockquote type=\"cite\">q<blockquote>qq</blockquote></blockquote><div><br>&nbsp;</div><!-- x --></body>", "nothing visible after the quote"),
            ("<div>ok</div><div align=\"left\"><div><!-- originalMessage -->|<div>-------- Original message --------</div><div>From: x</div></div></div>", "Samsung Email"),
            ("<p>Hi</p>|<p class=MsoNormal><b><span lang=DE>Von:</span></b><span> x<br><b>Gesendet:</b> y</span></p>", "Outlook bold with span, German"),
            ("<html><head><style>.yahoo_quoted{color:red}</style></head><body><p>Hi</p>|</body></html>", "quote class in the head's CSS"),
            ("<body><style>.gmail_quote{}</style><p>Hi</p><!-- <div class=\"gmail_quote\"> -->|</body>", "quote class in a body style and a comment"),
            ("<body><p>Hi</p><script>x='<div class=\"gmail_quote\">'</script>|</body>", "quote class in a script"),
        ];
        for (marked, what) in cases {
            let want = marked.find('|').unwrap();
            let html = marked.replace('|', "");
            assert_eq!(html_position(html.as_bytes()), want, "{what}: {marked}");
        }
    }

    #[test]
    fn text_table() {
        let cases: &[(&str, &str)] = &[
            ("Hello\nBye\n", "no quote: at the end"),
            (
                "Hi\n\n|On Mon, 1 Jan 2024, Bob <b@x> wrote:\n> quoted\n",
                "gmail",
            ),
            (
                "Hi\n\n|On Mon, 1 Jan 2024 at 10:00, Bob Smith <\nbob@example.com> wrote:\n> q\n",
                "wrapped attribution",
            ),
            (
                "Hi\n|-----Original Message-----\nFrom: x\n",
                "outlook separator",
            ),
            (
                "Hi\n|----- Original Message -----\nFrom: x\n",
                "spaced separator",
            ),
            (
                "Hi\n\n|From: Bob [mailto:b@x]\nSent: Monday\nTo: me\n",
                "outlook header block",
            ),
            (
                "Hi\n\n|________________________________\nFrom: Bob\nSent: Monday\n",
                "underscores",
            ),
            ("Hi\n|Bob wrote:\n> q\n", "> run with attribution"),
            ("Hi\n|> q\n> r\n", "> run"),
            ("Hi\n|> q\n>\n> r\n\n", "> run with blank lines"),
            (
                "Bob wrote:\n> q1\na1\n> q2\na2\n",
                "inline answers: at the end",
            ),
            (
                "On Mon, Bob wrote:\n> q\n\nMy answer below.\n",
                "bottom-posting: at the end",
            ),
            (
                "Answer\n\n|On Mon, Bob wrote:\n> q\n\n-- \nAna\n",
                "own signature below the quote",
            ),
            (
                "On Mon, Bob wrote:\n> q\n\nAnswer\n-- \nAna\n",
                "bottom-posting with own signature",
            ),
            ("Hi\n|Am 01.01.2024 um 10:00 schrieb Bob:\n> q\n", "german"),
            (
                "Hi\nFrom: the team\nregards\n",
                "From: without Sent: is not a quote",
            ),
            (
                "Hi\n\n|De\u{a0}: Bob\nEnvoy\u{e9}\u{a0}: lundi\n",
                "French header with no-break spaces",
            ),
            (
                "Hi\n\n|*De:* Bob\n*Enviado:* lunes\n",
                "Spanish header in bold",
            ),
            ("Hi\n\n|Da: Bob\nInviato: luned\u{ec}\n", "Italian header"),
            (
                "Hi\n\n|Anfang der weitergeleiteten Nachricht:\n\nVon: Bob\n",
                "Apple Mail forward, German",
            ),
            (
                "Hi\nDe: Lyon\nA bient\u{f4}t\n",
                "De: without a date line is text",
            ),
            (
                "FYI\n\n|---------- Weitergeleitete Nachricht ---------\nVon: Bob\n",
                "Gmail forward, German",
            ),
            (
                "FYI\n\n|---------- Message transf\u{e9}r\u{e9} ---------\nDe : Bob\n",
                "Gmail forward, French",
            ),
        ];
        for (marked, what) in cases {
            let text = marked.replace('|', "");
            let want = marked.find('|');
            assert_eq!(text_position(text.as_bytes()), want, "{what}: {marked:?}");
        }
    }
}
