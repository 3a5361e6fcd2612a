//! A line diff for the template history (longest common subsequence; templates are small).

/// One line of a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// Above this many lines on either side (after the common ends) the table (u16 cells, 8 MB
/// at this size) would be too large: the diff is "all of
/// the old removed, all of the new added".
const MAX_LINES: usize = 2000;

/// The lines of `new` against `old`, in order.
pub fn lines<'a>(old: &'a str, new: &'a str) -> Vec<Line<'a>> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Common ends first: most edits touch a few lines in the middle.
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let mut out: Vec<Line> = a[..head].iter().map(|l| Line::Same(l)).collect();
    if am.len() > MAX_LINES || bm.len() > MAX_LINES {
        out.extend(am.iter().map(|l| Line::Removed(l)));
        out.extend(bm.iter().map(|l| Line::Added(l)));
    } else {
        middle(am, bm, &mut out);
    }
    out.extend(a[a.len() - tail..].iter().map(|l| Line::Same(l)));
    out
}

fn middle<'a>(a: &[&'a str], b: &[&'a str], out: &mut Vec<Line<'a>>) {
    let w = b.len() + 1;
    // lcs[i * w + j]: the common subsequence length of a[i..] and b[j..].
    let mut lcs = vec![0u16; (a.len() + 1) * w];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i * w + j] = if a[i] == b[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(Line::Same(a[i]));
            i += 1;
            j += 1;
        } else if lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] {
            out.push(Line::Removed(a[i]));
            i += 1;
        } else {
            out.push(Line::Added(b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| Line::Removed(l)));
    out.extend(b[j..].iter().map(|l| Line::Added(l)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use Line::*;

    #[test]
    fn table() {
        let cases: &[(&str, &str, &[Line])] = &[
            ("", "", &[]),
            ("a\nb\n", "a\nb\n", &[Same("a"), Same("b")]),
            (
                "a\nb\nc",
                "a\nx\nc",
                &[Same("a"), Removed("b"), Added("x"), Same("c")],
            ),
            ("a\nc", "a\nb\nc", &[Same("a"), Added("b"), Same("c")]),
            ("a\nb\nc", "c", &[Removed("a"), Removed("b"), Same("c")]),
            ("", "new", &[Added("new")]),
            (
                "x\na\ny\nb",
                "a\nz\nb",
                &[Removed("x"), Same("a"), Removed("y"), Added("z"), Same("b")],
            ),
        ];
        for (old, new, want) in cases {
            assert_eq!(lines(old, new), *want, "{old:?} -> {new:?}");
        }
    }

    #[test]
    fn huge_inputs_stay_bounded() {
        // After the common first line, MAX_LINES + 1 different lines on each side.
        let old: String = (0..MAX_LINES + 2).map(|i| format!("{i}\n")).collect();
        let new: String = (0..MAX_LINES + 2).map(|i| format!("{}\n", i * 2)).collect();
        let d = lines(&old, &new);
        assert_eq!(d[0], Same("0"));
        assert_eq!(d.len(), 1 + 2 * (MAX_LINES + 1));
        let removed = d
            .iter()
            .take_while(|l| !matches!(l, Line::Added(_)))
            .count();
        assert_eq!(removed, 1 + MAX_LINES + 1, "all removed, then all added");
    }
}
