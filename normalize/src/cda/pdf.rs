//! A minimal text-only PDF renderer for the "FR-Document-PDF-copie" section that CR-BIO
//! 2024.01 requires (a PDF rendering of the report next to the structured body).
//!
//! No PDF crate is in the dependency set, and a copy of the narrative in Helvetica is all
//! the section needs, so this writes PDF 1.4 by hand: one Helvetica font in
//! WinAnsiEncoding, A4 pages of wrapped lines, and a correct cross-reference table.
//! Characters outside Windows-1252 are replaced with '?' (they cannot be shown with the
//! standard font without embedding one).

const PAGE_W: u32 = 595;
const PAGE_H: u32 = 842;
const MARGIN: u32 = 50;
const LEADING: u32 = 13;
const FONT_SIZE: u32 = 10;
const TITLE_SIZE: u32 = 14;
/// Characters per line at 10 pt Helvetica on an A4 page with 50 pt margins (conservative).
const WRAP: usize = 95;

/// Renders `title` and `lines` into a PDF document.
pub(crate) fn render(title: &str, lines: &[String]) -> Vec<u8> {
    let mut wrapped: Vec<String> = Vec::new();
    for l in lines {
        wrap_into(l, &mut wrapped);
    }
    let per_page = ((PAGE_H - 2 * MARGIN) / LEADING) as usize - 3;
    let mut pages: Vec<&[String]> = wrapped.chunks(per_page).collect();
    if pages.is_empty() {
        pages.push(&[]);
    }

    // Object numbers: 1 catalog, 2 pages, 3 font, then (page, content) pairs.
    let mut objects: Vec<Vec<u8>> = Vec::new();
    objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    let kids: Vec<String> = (0..pages.len())
        .map(|i| format!("{} 0 R", 4 + 2 * i))
        .collect();
    objects.push(
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            pages.len()
        )
        .into_bytes(),
    );
    objects.push(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    );
    for (i, page) in pages.iter().enumerate() {
        let content_no = 5 + 2 * i;
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_W} {PAGE_H}] \
                 /Resources << /Font << /F1 3 0 R >> >> /Contents {content_no} 0 R >>"
            )
            .into_bytes(),
        );
        let mut stream: Vec<u8> = Vec::new();
        let top = PAGE_H - MARGIN;
        stream
            .extend_from_slice(format!("BT\n/F1 {TITLE_SIZE} Tf\n{MARGIN} {top} Td\n").as_bytes());
        push_string(&mut stream, title);
        stream.extend_from_slice(b" Tj\n");
        stream.extend_from_slice(format!("/F1 {FONT_SIZE} Tf\n{LEADING} TL\nT*\nT*\n").as_bytes());
        for line in page.iter() {
            push_string(&mut stream, line);
            stream.extend_from_slice(b" Tj T*\n");
        }
        stream.extend_from_slice(b"ET\n");
        let mut obj = format!("<< /Length {} >>\nstream\n", stream.len()).into_bytes();
        obj.extend_from_slice(&stream);
        obj.extend_from_slice(b"endstream");
        objects.push(obj);
    }

    let mut out: Vec<u8> = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, obj) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(obj);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// Splits a line at `WRAP` characters, on spaces when possible; keeps empty lines.
fn wrap_into(line: &str, out: &mut Vec<String>) {
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
        // A single word longer than a line is cut.
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

/// Writes `s` as a PDF literal string in WinAnsiEncoding, escaping `(`, `)` and `\`.
fn push_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'(');
    for c in s.chars() {
        match win_ansi(c) {
            b @ (b'(' | b')' | b'\\') => {
                out.push(b'\\');
                out.push(b);
            }
            b if (0x20..0x7f).contains(&b) => out.push(b),
            b => out.extend_from_slice(format!("\\{b:03o}").as_bytes()),
        }
    }
    out.push(b')');
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
        let lines: Vec<String> = (0..150).map(|i| format!("ligne {i} (Œuf) é\\")).collect();
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
    fn wraps_long_lines() {
        let mut out = Vec::new();
        wrap_into(&"mot ".repeat(60), &mut out);
        assert!(out.len() >= 2);
        assert!(out.iter().all(|l| l.chars().count() <= WRAP));
    }
}
