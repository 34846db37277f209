//! One analyte's results over time as a self-contained SVG, drawn on the server: the
//! values as points joined by a line, the reference range as a band, abnormal results
//! (interpretation H, L, A, HH, LL, AA) marked in red with their flag, dates on the x axis
//! (dd/mm/yyyy) and values on the y axis with the unit.
//!
//! The SVG holds only fixed elements and presentation attributes written here: no script,
//! no `style`, no link, no external reference, nothing a browser would fetch. The only
//! text from outside (the unit, the flags) is escaped. Output is deterministic (fixed
//! number formatting, input order of equal timestamps kept), so it can be compared.

use std::fmt::Write;

use time::PrimitiveDateTime;

use super::html::escape;

/// One result of the analyte.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultPoint {
    /// When it was observed (local time as stored).
    pub at: PrimitiveDateTime,
    pub value: f64,
    /// HL7 table 0078 flag (H, L, HH, LL, A, AA, N ...), if any.
    pub interpretation: Option<String>,
}

/// Most points drawn: the most recent ones (a page stays light, a line stays readable).
pub const MAX_POINTS: usize = 200;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 280.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 44.0;
/// Date labels under the x axis, at most (more would overlap).
const X_LABELS: usize = 5;
/// Value ticks on the y axis.
const Y_TICKS: usize = 5;

const NORMAL: &str = "#1f5fa8";
const ABNORMAL: &str = "#c62828";
const BAND: &str = "#e3f1e6";
const AXIS: &str = "#555555";
const GRID: &str = "#dddddd";

/// The flag shown for an abnormal result, `None` for a normal or unknown one.
fn abnormal_flag(interpretation: Option<&str>) -> Option<&'static str> {
    match interpretation.map(str::trim)? {
        "H" => Some("H"),
        "L" => Some("L"),
        "HH" => Some("HH"),
        "LL" => Some("LL"),
        "A" => Some("A"),
        "AA" => Some("AA"),
        _ => None,
    }
}

/// `dd/mm/yyyy`.
fn fr_date(at: &PrimitiveDateTime) -> String {
    format!(
        "{:02}/{:02}/{:04}",
        at.day(),
        u8::from(at.month()),
        at.year()
    )
}

/// A value as French readers write it: decimal comma, no trailing zeros, at most 3 decimals.
fn fr_number(v: f64) -> String {
    let mut s = format!("{v:.3}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    if s == "-0" {
        s = "0".into();
    }
    s.replace('.', ",")
}

/// A coordinate, one decimal (enough for a screen, and stable text).
fn c(v: f64) -> String {
    format!("{v:.1}")
}

/// The SVG chart of `points` (any order; non-finite values are left out), with the
/// reference `range` (low, high) as a band when known, `unit` on the value axis.
pub fn results_chart(points: &[ResultPoint], range: Option<(f64, f64)>, unit: &str) -> String {
    let mut pts: Vec<&ResultPoint> = points.iter().filter(|p| p.value.is_finite()).collect();
    // Stable: equal timestamps keep their input order.
    pts.sort_by_key(|p| p.at);
    if pts.len() > MAX_POINTS {
        pts.drain(..pts.len() - MAX_POINTS);
    }
    let range = range
        .filter(|(lo, hi)| lo.is_finite() && hi.is_finite())
        .map(|(lo, hi)| (lo.min(hi), lo.max(hi)));
    let unit = escape(unit.trim());
    let label = if unit.is_empty() {
        "Résultats dans le temps".to_string()
    } else {
        format!("Résultats dans le temps ({unit})")
    };
    let mut svg = String::with_capacity(4096 + pts.len() * 200);
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{label}\" font-family=\"sans-serif\" font-size=\"11\">",
        w = WIDTH,
        h = HEIGHT
    );
    let _ = write!(svg, "<title>{label}</title>");
    if pts.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{AXIS}\">Aucun résultat numérique</text></svg>",
            c(WIDTH / 2.0),
            c(HEIGHT / 2.0)
        );
        return svg;
    }

    // Value scale: the points and the range, with a margin; a flat series gets room.
    let mut lo = pts.iter().map(|p| p.value).fold(f64::INFINITY, f64::min);
    let mut hi = pts
        .iter()
        .map(|p| p.value)
        .fold(f64::NEG_INFINITY, f64::max);
    if let Some((rl, rh)) = range {
        lo = lo.min(rl);
        hi = hi.max(rh);
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * 0.1
    } else {
        (lo.abs() * 0.1).max(1.0)
    };
    let (lo, hi) = (lo - pad, hi + pad);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let y = |v: f64| TOP + (hi - v) / (hi - lo) * plot_h;

    // Time scale: seconds since the first point; one instant is drawn in the middle.
    let t0 = pts[0].at.assume_utc().unix_timestamp();
    let t1 = pts[pts.len() - 1].at.assume_utc().unix_timestamp();
    let x = |p: &ResultPoint| {
        if t1 == t0 {
            LEFT + plot_w / 2.0
        } else {
            let t = p.at.assume_utc().unix_timestamp();
            LEFT + (t - t0) as f64 / (t1 - t0) as f64 * plot_w
        }
    };

    // Reference range band, under everything else.
    if let Some((rl, rh)) = range {
        let (top, bottom) = (y(rh), y(rl));
        let _ = write!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{BAND}\"><title>Valeurs de référence : {} – {}{}</title></rect>",
            c(LEFT),
            c(top),
            c(plot_w),
            c((bottom - top).max(0.5)),
            fr_number(rl),
            fr_number(rh),
            if unit.is_empty() {
                String::new()
            } else {
                format!(" {unit}")
            }
        );
    }

    // Value grid and labels.
    for i in 0..Y_TICKS {
        let v = lo + (hi - lo) * i as f64 / (Y_TICKS - 1) as f64;
        let yy = c(y(v));
        let _ = write!(
            svg,
            "<line x1=\"{}\" y1=\"{yy}\" x2=\"{}\" y2=\"{yy}\" stroke=\"{GRID}\" stroke-width=\"1\"/><text x=\"{}\" y=\"{yy}\" text-anchor=\"end\" dominant-baseline=\"middle\" fill=\"{AXIS}\">{}</text>",
            c(LEFT),
            c(WIDTH - RIGHT),
            c(LEFT - 6.0),
            fr_number(v)
        );
    }
    // Axes.
    let _ = write!(
        svg,
        "<line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{b}\" stroke=\"{AXIS}\" stroke-width=\"1\"/><line x1=\"{l}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"{AXIS}\" stroke-width=\"1\"/>",
        l = c(LEFT),
        t = c(TOP),
        b = c(TOP + plot_h),
        r = c(WIDTH - RIGHT)
    );
    if !unit.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"12\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 12 {})\" fill=\"{AXIS}\">{unit}</text>",
            c(TOP + plot_h / 2.0),
            c(TOP + plot_h / 2.0)
        );
    }
    // Date labels: the first, the last and evenly spaced points between.
    let labels = X_LABELS.min(pts.len());
    let mut last_idx = usize::MAX;
    for k in 0..labels {
        let idx = if labels == 1 {
            0
        } else {
            k * (pts.len() - 1) / (labels - 1)
        };
        if idx == last_idx {
            continue;
        }
        last_idx = idx;
        let anchor = match (k, labels) {
            (_, 1) => "middle",
            (0, _) => "start",
            (k, n) if k == n - 1 => "end",
            _ => "middle",
        };
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\" fill=\"{AXIS}\">{}</text>",
            c(x(pts[idx])),
            c(TOP + plot_h + 18.0),
            fr_date(&pts[idx].at)
        );
    }

    // The line, then the points over it.
    if pts.len() > 1 {
        let line: Vec<String> = pts
            .iter()
            .map(|p| format!("{},{}", c(x(p)), c(y(p.value))))
            .collect();
        let _ = write!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{NORMAL}\" stroke-width=\"1.5\"/>",
            line.join(" ")
        );
    }
    for p in &pts {
        let (cx, cy) = (c(x(p)), c(y(p.value)));
        let flag = abnormal_flag(p.interpretation.as_deref());
        let tip = format!(
            "{} : {}{}{}",
            fr_date(&p.at),
            fr_number(p.value),
            if unit.is_empty() {
                String::new()
            } else {
                format!(" {unit}")
            },
            flag.map(|f| format!(" ({f})")).unwrap_or_default()
        );
        match flag {
            Some(f) => {
                let _ = write!(
                    svg,
                    "<circle class=\"abnormal\" cx=\"{cx}\" cy=\"{cy}\" r=\"4.5\" fill=\"{ABNORMAL}\"><title>{tip}</title></circle><text x=\"{cx}\" y=\"{}\" text-anchor=\"middle\" fill=\"{ABNORMAL}\" font-weight=\"bold\">{f}</text>",
                    c(y(p.value) - 8.0)
                );
            }
            None => {
                let _ = write!(
                    svg,
                    "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"3\" fill=\"{NORMAL}\"><title>{tip}</title></circle>"
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::events::Event;
    use time::macros::datetime;

    fn point(at: PrimitiveDateTime, value: f64, flag: Option<&str>) -> ResultPoint {
        ResultPoint {
            at,
            value,
            interpretation: flag.map(str::to_string),
        }
    }

    /// The element names of `svg` (checked well-formed on the way).
    fn elements(svg: &str) -> Vec<String> {
        let mut r = quick_xml::Reader::from_str(svg);
        let mut names = Vec::new();
        loop {
            match r.read_event().expect("well-formed SVG") {
                Event::Start(e) | Event::Empty(e) => {
                    for a in e.attributes() {
                        let a = a.expect("attribute");
                        let key: &str = a.key.as_ref();
                        assert!(
                            !key.starts_with("on") && key != "style" && key != "href",
                            "attribute {key}"
                        );
                        assert!(!key.contains("href"), "attribute {key}");
                    }
                    let qname = e.name();
                    let name: &str = qname.as_ref();
                    names.push(name.to_string());
                }
                Event::Eof => break,
                _ => {}
            }
        }
        names
    }

    fn series() -> Vec<ResultPoint> {
        vec![
            point(datetime!(2025-03-02 08:30), 5.9, Some("H")),
            point(datetime!(2025-01-10 09:00), 4.2, Some("N")),
            point(datetime!(2025-02-05 10:15), 3.1, Some("L")),
        ]
    }

    #[test]
    fn render_chart_draws_points_band_and_flags() {
        let svg = results_chart(&series(), Some((3.5, 5.5)), "mmol/L");
        let names = elements(&svg);
        let allowed = ["svg", "title", "rect", "line", "text", "polyline", "circle"];
        assert!(
            names.iter().all(|n| allowed.contains(&n.as_str())),
            "{names:?}"
        );
        assert_eq!(names.iter().filter(|n| *n == "circle").count(), 3);
        assert_eq!(names.iter().filter(|n| *n == "rect").count(), 1);
        assert_eq!(svg.matches("class=\"abnormal\"").count(), 2);
        assert!(svg.contains(">H</text>") && svg.contains(">L</text>"));
        assert!(svg.contains("Valeurs de référence : 3,5 – 5,5 mmol/L"));
        // Sorted by time: the first label is the earliest date, the last the latest.
        let first = svg.find("10/01/2025").expect("first date");
        let last = svg.find("02/03/2025").expect("last date");
        assert!(first < last);
        assert!(svg.contains("<polyline points=\""));
        assert!(svg.contains("02/03/2025 : 5,9 mmol/L (H)"));
        for bad in [
            "<script",
            "style=",
            "href",
            "url(",
            "<image",
            "<foreignObject",
        ] {
            assert!(!svg.contains(bad), "{bad} in {svg}");
        }
    }

    #[test]
    fn render_chart_is_deterministic() {
        let a = results_chart(&series(), Some((3.5, 5.5)), "mmol/L");
        let mut reversed = series();
        reversed.reverse();
        let b = results_chart(&reversed, Some((3.5, 5.5)), "mmol/L");
        assert_eq!(a, b);
        assert_eq!(a, results_chart(&series(), Some((3.5, 5.5)), "mmol/L"));
    }

    #[test]
    fn render_chart_escapes_the_unit() {
        let svg = results_chart(&series(), None, "<script>alert(1)</script>\" onload=\"x");
        assert!(!svg.contains("<script"));
        assert!(!svg.contains("\" onload"));
        assert!(svg.contains("&lt;script&gt;"));
        elements(&svg);
        // No range: no band.
        assert!(!svg.contains("<rect"));
    }

    #[test]
    fn render_chart_keeps_the_last_points() {
        let start = datetime!(2020-01-01 08:00);
        let pts: Vec<ResultPoint> = (0..500)
            .map(|i| point(start + time::Duration::days(i), i as f64, None))
            .chain([
                point(start, f64::NAN, None),
                point(start, f64::INFINITY, None),
            ])
            .collect();
        let svg = results_chart(&pts, Some((f64::NAN, 3.0)), "g/L");
        assert_eq!(svg.matches("<circle").count(), MAX_POINTS);
        // The most recent 200: from day 300 on.
        let first = start + time::Duration::days(300);
        assert!(svg.contains(&fr_date(&first)));
        assert!(!svg.contains(&format!(">{}<", fr_date(&start))));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        // A NaN bound is no range.
        assert!(!svg.contains("<rect"));
        assert!(svg.len() < 60_000, "{} bytes", svg.len());
    }

    #[test]
    fn render_chart_single_point_and_empty() {
        let one = results_chart(
            &[point(datetime!(2025-01-10 09:00), 7.0, Some("HH"))],
            None,
            "",
        );
        elements(&one);
        assert_eq!(one.matches("<circle").count(), 1);
        assert!(!one.contains("<polyline"));
        assert!(one.contains(">HH</text>"));
        assert!(one.contains("10/01/2025"));
        let none = results_chart(&[], Some((1.0, 2.0)), "g/L");
        elements(&none);
        assert!(none.contains("Aucun résultat numérique"));
    }

    #[test]
    fn render_chart_numbers_are_french() {
        assert_eq!(fr_number(3.5), "3,5");
        assert_eq!(fr_number(4.0), "4");
        assert_eq!(fr_number(-0.0001), "0");
        assert_eq!(fr_number(0.125), "0,125");
    }
}
