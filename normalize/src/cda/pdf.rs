//! A minimal text-only PDF renderer for the "FR-Document-PDF-copie" section that CR-BIO
//! 2024.01 requires (a PDF rendering of the report next to the structured body).
//!
//! No PDF crate is in the dependency set, and a copy of the narrative in Helvetica is all
//! the section needs, so this writes PDF 1.4 by hand: one Helvetica font in
//! WinAnsiEncoding, A4 pages of wrapped lines, and a correct cross-reference table.
//! Characters outside Windows-1252 are replaced with '?' (they cannot be shown with the
//! standard font without embedding one).

use std::borrow::Cow;
use std::sync::LazyLock;

const PAGE_W: u32 = 595;
const PAGE_H: u32 = 842;
const MARGIN: u32 = 50;
const LEADING: u32 = 13;
const FONT_SIZE: u32 = 10;
const TITLE_SIZE: u32 = 14;
/// Characters per line at 10 pt Helvetica on an A4 page with 50 pt margins (conservative).
const WRAP: usize = 95;

/// The lines of a PDF copy, written one after the other into one buffer: a `String` per
/// line was an allocation and a free for each of a report's few dozen lines.
#[derive(Default)]
pub(crate) struct Lines {
    text: String,
    /// Where each line ends in `text`.
    ends: Vec<usize>,
}

impl Lines {
    pub(crate) fn with_capacity(bytes: usize, lines: usize) -> Lines {
        Lines {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(lines),
        }
    }

    /// Appends to the line being written.
    pub(crate) fn push_str(&mut self, s: &str) {
        self.text.push_str(s);
    }

    /// The line being written, to append to.
    pub(crate) fn current(&mut self) -> &mut String {
        &mut self.text
    }

    /// Ends the line being written (an empty one if nothing was appended).
    pub(crate) fn end_line(&mut self) {
        self.ends.push(self.text.len());
    }

    /// Appends `parts` as one line.
    pub(crate) fn line(&mut self, parts: &[&str]) {
        for p in parts {
            self.text.push_str(p);
        }
        self.end_line();
    }

    /// Length in bytes of the line being written.
    pub(crate) fn current_len(&self) -> usize {
        self.text.len() - self.ends.last().copied().unwrap_or(0)
    }

    /// Cuts the line being written back to `len` bytes (a char boundary).
    pub(crate) fn truncate_current(&mut self, len: usize) {
        let start = self.ends.last().copied().unwrap_or(0);
        self.text.truncate(start + len);
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let l = &self.text[start..end];
            start = end;
            l
        })
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

#[cfg(test)]
impl<S: AsRef<str>> FromIterator<S> for Lines {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Lines {
        let mut lines = Lines::default();
        for l in iter {
            lines.line(&[l.as_ref()]);
        }
        lines
    }
}

/// Renders `title` and `lines` into a PDF document.
///
/// Written into the output buffer directly, with a byte-level fast path for ASCII text: a
/// lab report's copy has a few dozen lines, and a `format!` per object, per wrapped
/// character and per accented letter (octal escape) made this copy a quarter of the CR-BIO
/// writer's time. Numbers are written by [`push_uint`] and the text that only depends on
/// the constants above is formatted once ([`PAGE_TEXT`]): the twenty `write!`s of a
/// one-page copy were still 3% of lab normalize.
pub(crate) fn render(title: &str, lines: &Lines) -> Vec<u8> {
    let mut wrapped: Vec<Cow<'_, str>> = Vec::with_capacity(lines.len() + 8);
    for l in lines.iter() {
        wrap_into(l, &mut wrapped);
    }
    let per_page = ((PAGE_H - 2 * MARGIN) / LEADING) as usize - 3;
    let mut pages: Vec<&[Cow<'_, str>]> = wrapped.chunks(per_page).collect();
    if pages.is_empty() {
        pages.push(&[]);
    }
    let text_bytes: usize = wrapped.iter().map(|l| l.len() + 8).sum();
    let mut out: Vec<u8> = Vec::with_capacity(1024 + 300 * pages.len() + 2 * text_bytes);
    out.extend_from_slice(b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n");
    // Object numbers: 1 catalog, 2 pages, 3 font, then (page, content) pairs.
    let count = 3 + 2 * pages.len();
    let mut offsets = Vec::with_capacity(count);
    let begin = |out: &mut Vec<u8>, offsets: &mut Vec<usize>| {
        offsets.push(out.len());
        push_uint(out, offsets.len(), 0);
        out.extend_from_slice(b" 0 obj\n");
    };
    const END: &[u8] = b"\nendobj\n";

    begin(&mut out, &mut offsets);
    out.extend_from_slice(b"<< /Type /Catalog /Pages 2 0 R >>");
    out.extend_from_slice(END);
    begin(&mut out, &mut offsets);
    out.extend_from_slice(b"<< /Type /Pages /Kids [");
    for i in 0..pages.len() {
        if i > 0 {
            out.push(b' ');
        }
        push_uint(&mut out, 4 + 2 * i, 0);
        out.extend_from_slice(b" 0 R");
    }
    out.extend_from_slice(b"] /Count ");
    push_uint(&mut out, pages.len(), 0);
    out.extend_from_slice(b" >>");
    out.extend_from_slice(END);
    begin(&mut out, &mut offsets);
    out.extend_from_slice(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    );
    out.extend_from_slice(END);
    let mut stream: Vec<u8> = Vec::with_capacity(2 * text_bytes / pages.len() + 256);
    for (i, page) in pages.iter().enumerate() {
        let content_no = 5 + 2 * i;
        begin(&mut out, &mut offsets);
        out.extend_from_slice(PAGE_TEXT.page.as_bytes());
        push_uint(&mut out, content_no, 0);
        out.extend_from_slice(b" 0 R >>");
        out.extend_from_slice(END);
        stream.clear();
        stream.extend_from_slice(PAGE_TEXT.title.as_bytes());
        push_string(&mut stream, title);
        stream.extend_from_slice(b" Tj\n");
        stream.extend_from_slice(PAGE_TEXT.body.as_bytes());
        for line in page.iter() {
            push_string(&mut stream, line);
            stream.extend_from_slice(b" Tj T*\n");
        }
        stream.extend_from_slice(b"ET\n");
        begin(&mut out, &mut offsets);
        out.extend_from_slice(b"<< /Length ");
        push_uint(&mut out, stream.len(), 0);
        out.extend_from_slice(b" >>\nstream\n");
        out.extend_from_slice(&stream);
        out.extend_from_slice(b"endstream");
        out.extend_from_slice(END);
    }
    debug_assert_eq!(offsets.len(), count);

    let xref = out.len();
    out.extend_from_slice(b"xref\n0 ");
    push_uint(&mut out, count + 1, 0);
    out.extend_from_slice(b"\n0000000000 65535 f \n");
    for off in offsets {
        push_uint(&mut out, off, 10);
        out.extend_from_slice(b" 00000 n \n");
    }
    out.extend_from_slice(b"trailer\n<< /Size ");
    push_uint(&mut out, count + 1, 0);
    out.extend_from_slice(b" /Root 1 0 R >>\nstartxref\n");
    push_uint(&mut out, xref, 0);
    out.extend_from_slice(b"\n%%EOF\n");
    out
}

/// The text of every page that only depends on the layout constants, formatted once.
struct PageText {
    /// A page object up to its content's object number.
    page: String,
    /// The content stream up to the title.
    title: String,
    /// After the title, up to the first line.
    body: String,
}

static PAGE_TEXT: LazyLock<PageText> = LazyLock::new(|| PageText {
    page: format!(
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_W} {PAGE_H}] \
         /Resources << /Font << /F1 3 0 R >> >> /Contents "
    ),
    title: format!("BT\n/F1 {TITLE_SIZE} Tf\n{MARGIN} {} Td\n", PAGE_H - MARGIN),
    body: format!("/F1 {FONT_SIZE} Tf\n{LEADING} TL\nT*\nT*\n"),
});

/// `n` in decimal, left-padded with zeros to `width` digits (0: no padding).
fn push_uint(out: &mut Vec<u8>, n: usize, width: usize) {
    let mut buf = [0; 20];
    let digits = super::decimal_digits(n, &mut buf);
    out.resize(out.len() + width.saturating_sub(digits.len()), b'0');
    out.extend_from_slice(digits);
}

/// Splits a line at `WRAP` characters, on spaces when possible; keeps empty lines.
/// Leading spaces are dropped (a line is a list of words).
fn wrap_into<'a>(line: &'a str, out: &mut Vec<Cow<'a, str>>) {
    // Most lines fit: they are their own single piece, without their leading spaces
    // (what the word loop below makes of them).
    if line.len() <= WRAP || line.chars().count() <= WRAP {
        out.push(Cow::Borrowed(line.trim_start_matches(' ')));
        return;
    }
    let mut current = String::new();
    let mut count = 0usize;
    for word in line.split(' ') {
        let n = word.chars().count();
        if count > 0 && count + 1 + n > WRAP {
            out.push(Cow::Owned(std::mem::take(&mut current)));
            count = 0;
        }
        if count > 0 {
            current.push(' ');
            count += 1;
        }
        // A word that fits is copied whole; a single word longer than a line is cut.
        if count + n <= WRAP {
            current.push_str(word);
            count += n;
            continue;
        }
        for c in word.chars() {
            if count == WRAP {
                out.push(Cow::Owned(std::mem::take(&mut current)));
                count = 0;
            }
            current.push(c);
            count += 1;
        }
    }
    out.push(Cow::Owned(current));
}

/// Writes `s` as a PDF literal string in WinAnsiEncoding, escaping `(`, `)` and `\\`.
fn push_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'(');
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // Runs of printable ASCII other than the three escapes (most of the text) are
        // copied in one piece; the run is found through a table (one load and test a byte,
        // where the range and three compares were a quarter of the PDF's cost).
        let run = bytes[i..]
            .iter()
            .position(|&b| !PLAIN[usize::from(b)])
            .unwrap_or(bytes.len() - i);
        if run > 0 {
            out.extend_from_slice(&bytes[i..i + run]);
            i += run;
            continue;
        }
        // i is a char boundary (the run ended on an ASCII byte or before a lead byte).
        let c = s[i..].chars().next().unwrap_or('?');
        i += c.len_utf8();
        match win_ansi(c) {
            b @ (b'(' | b')' | b'\\') => {
                out.push(b'\\');
                out.push(b);
            }
            b if (0x20..0x7f).contains(&b) => out.push(b),
            b => push_octal(out, b),
        }
    }
    out.push(b')');
}

/// Bytes copied as they are into a PDF literal string: printable ASCII but `(`, `)`, `\\`.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x20;
    while b < 0x7f {
        t[b] = !matches!(b as u8, b'(' | b')' | b'\\');
        b += 1;
    }
    t
};

/// `\ooo`, the three-digit octal escape of a byte.
fn push_octal(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[
        b'\\',
        b'0' + (b >> 6),
        b'0' + ((b >> 3) & 7),
        b'0' + (b & 7),
    ]);
}

/// Windows-1252 byte of a character, '?' when it has none.
fn win_ansi(c: char) -> u8 {
    let u = c as u32;
    match u {
        0x20..=0x7e | 0xa0..=0xff => u as u8,
        _ => match c {
            '€' => 0x80,
            '‚' => 0x82,
            '„' => 0x84,
            '…' => 0x85,
            '‰' => 0x89,
            'Š' => 0x8a,
            '‹' => 0x8b,
            'Œ' => 0x8c,
            'Ž' => 0x8e,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            '™' => 0x99,
            'š' => 0x9a,
            '›' => 0x9b,
            'œ' => 0x9c,
            'ž' => 0x9e,
            'Ÿ' => 0x9f,
            '\t' => b' ',
            _ => b'?',
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdf_structure_and_xref_offsets() {
        let lines: Lines = (0..150).map(|i| format!("ligne {i} (Œuf) é\\")).collect();
        let pdf = render("Titre", &lines);
        assert!(pdf.starts_with(b"%PDF-1.4"));
        assert!(pdf.ends_with(b"%%EOF\n"));
        // Everything after the binary comment of line 2 is ASCII.
        let text: String = pdf
            .iter()
            .map(|&b| if b < 0x80 { b as char } else { '~' })
            .collect();
        // 150 lines need several pages.
        assert!(text.contains("/Count 3"));
        // Each xref offset points at "N 0 obj" (one char per byte above, so offsets hold).
        let xref_at: usize = text
            .rsplit("startxref\n")
            .next()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let table = &text[xref_at..];
        let mut checked = 0;
        for (i, line) in table
            .lines()
            .skip(3)
            .take_while(|l| l.ends_with(" n "))
            .enumerate()
        {
            let off: usize = line[..10].parse().unwrap();
            assert!(text[off..].starts_with(&format!("{} 0 obj", i + 1)));
            checked += 1;
        }
        assert_eq!(checked, 3 + 2 * 3);
        assert!(text.contains("(ligne 0 \\(\\214uf\\) \\351\\\\)"));
    }

    #[test]
    fn lines_written_in_one_buffer() {
        let mut lines = Lines::with_capacity(16, 4);
        lines.line(&["a", "b"]);
        lines.end_line();
        lines.push_str("é x");
        assert_eq!(lines.current_len(), 4);
        lines.push_str("  [");
        lines.truncate_current(4);
        lines.current().push('!');
        lines.end_line();
        assert_eq!(lines.iter().collect::<Vec<_>>(), ["ab", "", "é x!"]);
        let from: Lines = ["x", ""].into_iter().collect();
        assert_eq!(from.iter().collect::<Vec<_>>(), ["x", ""]);
    }

    #[test]
    fn numbers_as_the_format_macros_wrote_them() {
        for (n, width) in [
            (0, 0),
            (7, 0),
            (1234, 0),
            (0, 10),
            (1234, 10),
            (usize::MAX, 0),
        ] {
            let mut out = Vec::new();
            push_uint(&mut out, n, width);
            let expected = if width == 0 {
                format!("{n}")
            } else {
                format!("{n:010}")
            };
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn wraps_long_lines() {
        let mut out = Vec::new();
        let line = "mot ".repeat(60);
        wrap_into(&line, &mut out);
        assert!(out.len() >= 2);
        assert!(out.iter().all(|l| l.chars().count() <= WRAP));
    }

    /// The word loop as first written (a char at a time): the fast paths must agree.
    fn wrap_reference(line: &str, out: &mut Vec<String>) {
        let mut current = String::new();
        let mut count = 0usize;
        for word in line.split(' ') {
            let n = word.chars().count();
            if count > 0 && count + 1 + n > WRAP {
                out.push(std::mem::take(&mut current));
                count = 0;
            }
            if count > 0 {
                current.push(' ');
                count += 1;
            }
            for c in word.chars() {
                if count == WRAP {
                    out.push(std::mem::take(&mut current));
                    count = 0;
                }
                current.push(c);
                count += 1;
            }
        }
        out.push(current);
    }

    #[test]
    fn wrap_matches_the_char_loop() {
        let mut lines = vec![
            String::new(),
            " ".into(),
            "   ".into(),
            "  Sodium : 1.0 mmol/L  [135 - 145]  N".into(),
            "    commentaire  à  deux espaces ".into(),
            "é".repeat(WRAP),
            "é".repeat(WRAP + 1),
            format!("  {}", "x".repeat(WRAP)),
            format!("{} {}", "a".repeat(WRAP - 1), "b".repeat(3 * WRAP)),
        ];
        for n in [WRAP - 2, WRAP - 1, WRAP, WRAP + 1, 3 * WRAP] {
            lines.push(
                "Résultat contrôlé "
                    .repeat(n / 18 + 1)
                    .chars()
                    .take(n)
                    .collect(),
            );
            lines.push(format!("  {}", "mot ".repeat(n / 4)));
        }
        for l in &lines {
            let mut fast = Vec::new();
            wrap_into(l, &mut fast);
            let mut slow = Vec::new();
            wrap_reference(l, &mut slow);
            let fast: Vec<String> = fast.into_iter().map(Cow::into_owned).collect();
            assert_eq!(fast, slow, "{l:?}");
        }
    }
}
