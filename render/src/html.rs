//! HTML escaping and the size-bounded writer of rendered narrative: the only places text
//! from a document becomes output.

/// `text` with the five HTML-significant characters escaped, safe in element content and
/// in a quoted attribute value (HTML and SVG alike).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text, usize::MAX);
    out
}

/// Appends `text` escaped to `out` while `out` stays within `limit` bytes; false when it
/// had to stop (the text is cut at a character, never inside an escape).
pub(crate) fn escape_into(out: &mut String, text: &str, limit: usize) -> bool {
    for c in text.chars() {
        let esc = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&#39;",
            _ => "",
        };
        let len = if esc.is_empty() {
            c.len_utf8()
        } else {
            esc.len()
        };
        if out.len() + len > limit {
            return false;
        }
        if esc.is_empty() {
            out.push(c);
        } else {
            out.push_str(esc);
        }
    }
    true
}

/// Builds one section's HTML under a byte budget. Every element opened is pushed with its
/// closing tag (`""` when the element contributes no markup), and the budget always keeps
/// room for the closing tags of what is open, so output cut short is still balanced.
pub(crate) struct Writer {
    pub out: String,
    budget: usize,
    closers: Vec<&'static str>,
    closers_len: usize,
    /// Set once the budget ran out: everything after is dropped.
    pub truncated: bool,
}

/// What a cut-short section ends with.
pub(crate) const TRUNCATED_MARKER: &str =
    "<p class=\"truncated\">[… document tronqué : trop long pour être affiché ici]</p>";

impl Writer {
    pub fn new(budget: usize) -> Self {
        Writer {
            out: String::new(),
            budget,
            closers: Vec::new(),
            closers_len: 0,
            truncated: false,
        }
    }

    fn room(&self) -> usize {
        self.budget.saturating_sub(self.closers_len)
    }

    /// Opens an element: `open` is fixed markup built by the renderer (never document
    /// text), `close` its closing tag. Past the budget the element is still tracked (so
    /// ends pair up) but writes nothing.
    pub fn open(&mut self, open: &str, close: &'static str) {
        if !self.truncated && self.out.len() + open.len() + close.len() > self.room() {
            self.truncate();
        }
        if self.truncated {
            self.closers.push("");
            return;
        }
        self.out.push_str(open);
        self.closers.push(close);
        self.closers_len += close.len();
    }

    /// A void element (`<br>`) or fixed text such as a placeholder.
    pub fn raw(&mut self, markup: &str) {
        if !self.truncated && self.out.len() + markup.len() > self.room() {
            self.truncate();
        }
        if !self.truncated {
            self.out.push_str(markup);
        }
    }

    /// Closes the innermost open element.
    pub fn close(&mut self) {
        if let Some(c) = self.closers.pop() {
            self.out.push_str(c);
            self.closers_len -= c.len();
        }
    }

    /// Document text, escaped.
    pub fn text(&mut self, text: &str) {
        if self.truncated {
            return;
        }
        let room = self.room();
        if !escape_into(&mut self.out, text, room) {
            self.truncate();
        }
    }

    /// Closes everything open now, in order, and appends the marker; the elements stay
    /// on the stack with empty closers so that the document's end tags still pair up.
    fn truncate(&mut self) {
        self.truncated = true;
        for c in self.closers.iter_mut().rev() {
            self.out.push_str(c);
            *c = "";
        }
        self.closers_len = 0;
        self.out.push_str(TRUNCATED_MARKER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_the_five_characters() {
        assert_eq!(
            escape("<a href=\"x\" onclick='y'>&</a>"),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn writer_stays_balanced_and_within_budget() {
        let budget = 60;
        let mut w = Writer::new(budget);
        w.open("<div>", "</div>");
        w.open("<span>", "</span>");
        w.text(&"é<".repeat(100));
        w.close();
        w.open("<b>", "</b>");
        w.close();
        w.close();
        assert!(w.truncated);
        assert!(w.out.len() <= budget + TRUNCATED_MARKER.len(), "{}", w.out);
        assert!(w.out.starts_with("<div><span>é&lt;"));
        assert!(w.out.ends_with(&format!("</span></div>{TRUNCATED_MARKER}")));
    }
}
