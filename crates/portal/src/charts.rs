//! Server-rendered SVG line charts over time: hand-written SVG with axes, ticks, labels, one
//! line per series, and an accessible `<title>`/`<desc>` (the page shows the data as a table
//! beside it). No script, no inline style: presentation attributes only, so the strict CSP
//! holds.

use std::fmt::Write as _;

/// One line of a chart: (time in ms since the epoch, value) points.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(u64, f64)>,
}

/// A linear map from a data interval onto a pixel interval (either may be reversed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    pub d0: f64,
    pub d1: f64,
    pub r0: f64,
    pub r1: f64,
}

impl Scale {
    pub fn new(d0: f64, d1: f64, r0: f64, r1: f64) -> Scale {
        Scale { d0, d1, r0, r1 }
    }

    /// The pixel of data value `v`; a degenerate domain maps to the middle of the range.
    pub fn map(&self, v: f64) -> f64 {
        let span = self.d1 - self.d0;
        if span.abs() < f64::EPSILON {
            return (self.r0 + self.r1) / 2.0;
        }
        self.r0 + (v - self.d0) / span * (self.r1 - self.r0)
    }
}

/// A "nice" step (1, 2, 2.5 or 5 times a power of ten) giving about `n` ticks over `span`.
pub fn nice_step(span: f64, n: usize) -> f64 {
    if !(span.is_finite()) || span <= 0.0 || n == 0 {
        return 1.0;
    }
    let raw = span / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 2.5 {
        2.5
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Value-axis bounds widened to whole steps around [min, max], and the ticks between them.
pub fn nice_ticks(min: f64, max: f64, n: usize) -> (f64, f64, Vec<f64>) {
    let (mut lo, mut hi) = if min <= max { (min, max) } else { (max, min) };
    if (hi - lo).abs() < f64::EPSILON {
        // One value (or all equal): a band around it.
        let pad = if lo.abs() < 1.0 { 1.0 } else { lo.abs() * 0.1 };
        lo -= pad;
        hi += pad;
    }
    let step = nice_step(hi - lo, n);
    let lo = (lo / step).floor() * step;
    let hi = (hi / step).ceil() * step;
    let mut ticks = Vec::new();
    let mut t = lo;
    while t <= hi + step * 1e-9 && ticks.len() < 50 {
        ticks.push((t / step).round() * step);
        t += step;
    }
    (lo, hi, ticks)
}

/// `n` evenly spaced time ticks over [t0, t1] (one when they are equal).
pub fn time_ticks(t0: u64, t1: u64, n: usize) -> Vec<u64> {
    if t1 <= t0 || n < 2 {
        return vec![t0];
    }
    (0..n)
        .map(|i| t0 + ((t1 - t0) as u128 * i as u128 / (n as u128 - 1)) as u64)
        .collect()
}

/// A tick label for a time: the date, or the time of day when the span is under two days.
pub fn time_label(ms: u64, span_ms: u64) -> String {
    if span_ms < 3_600_000 {
        // Under an hour: to the second.
        let Some(s) = crate::templates::rfc3339(ms) else {
            return "—".into();
        }; // 2026-11-30T22:15:07Z
        return s.get(11..19).unwrap_or(&s).to_string();
    }
    let full = crate::templates::when(&ms); // 2026-11-30 22:15 UTC
    if span_ms < 2 * 86_400_000 {
        full.get(11..16).unwrap_or(&full).to_string()
    } else {
        full.get(..10).unwrap_or(&full).to_string()
    }
}

/// A value as a tick label: no decimals for whole numbers.
pub fn value_label(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Colours for series, distinguishable and dark enough on white (WCAG non-text contrast).
const COLOURS: [&str; 4] = ["#0b5cad", "#a11d1d", "#1d6b2f", "#6b3fa0"];
/// Dash patterns, so series differ without colour too.
const DASHES: [&str; 4] = ["", "6 3", "2 3", "8 3 2 3"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub const WIDTH: f64 = 640.0;
pub const HEIGHT: f64 = 260.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 40.0;

/// A line chart of `series` over time as an SVG element. `unit` labels the value axis; `id`
/// makes the title/desc ids unique on the page. Empty series are left out; with no points at
/// all the chart says so.
pub fn line_chart(id: &str, title: &str, unit: &str, series: &[Series]) -> String {
    let series: Vec<&Series> = series.iter().filter(|s| !s.points.is_empty()).collect();
    let all: Vec<(u64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(_, v)| v.is_finite())
        .collect();
    let id = esc(id);
    let mut svg = String::new();
    let count = all.len();
    let desc = if count == 0 {
        format!("{title}: no readings yet.")
    } else {
        let names: Vec<String> = series
            .iter()
            .map(|s| {
                let (lo, hi) = s
                    .points
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, v)| {
                        (a.min(*v), b.max(*v))
                    });
                format!(
                    "{} from {} to {} {unit} over {} readings",
                    s.name,
                    value_label(lo),
                    value_label(hi),
                    s.points.len()
                )
            })
            .collect();
        format!(
            "{title}: {}. The table beside lists every value.",
            names.join("; ")
        )
    };
    let _ = write!(
        svg,
        r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-labelledby="{id}-t {id}-d"><title id="{id}-t">{}</title><desc id="{id}-d">{}</desc>"#,
        esc(title),
        esc(&desc)
    );
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP);
    if count == 0 {
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#4a5360" font-size="14">No readings yet</text></svg>"##,
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        return svg;
    }
    let t0 = all.iter().map(|p| p.0).min().unwrap_or(0);
    let t1 = all.iter().map(|p| p.0).max().unwrap_or(0);
    let vmin = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let vmax = all.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi, ticks) = nice_ticks(vmin, vmax, 5);
    let xs = Scale::new(t0 as f64, t1 as f64, x0, x1);
    let ys = Scale::new(lo, hi, y0, y1);
    // Grid and value ticks.
    for t in &ticks {
        let y = ys.map(*t);
        let _ = write!(
            svg,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#e3e8ee" stroke-width="1"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11" fill="#1b1f24">{}</text>"##,
            x0 - 6.0,
            y + 4.0,
            value_label(*t)
        );
    }
    // Axes.
    let _ = write!(
        svg,
        r##"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#1b1f24" stroke-width="1"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#1b1f24" stroke-width="1"/>"##
    );
    let _ = write!(
        svg,
        r##"<text x="12" y="{:.1}" font-size="11" fill="#1b1f24" transform="rotate(-90 12 {:.1})" text-anchor="middle">{}</text>"##,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        esc(unit)
    );
    // Time ticks.
    let span = t1.saturating_sub(t0);
    let tt = if span == 0 {
        vec![t0]
    } else {
        time_ticks(t0, t1, 5)
    };
    for t in tt {
        let x = xs.map(t as f64);
        let anchor = if span == 0 {
            "middle"
        } else if t == t0 {
            "start"
        } else if t == t1 {
            "end"
        } else {
            "middle"
        };
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{:.1}" stroke="#1b1f24" stroke-width="1"/><text x="{x:.1}" y="{:.1}" text-anchor="{anchor}" font-size="11" fill="#1b1f24">{}</text>"##,
            y0 + 5.0,
            y0 + 18.0,
            esc(&time_label(t, span))
        );
    }
    // Lines and points.
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let dash = DASHES[i % DASHES.len()];
        let mut pts: Vec<(u64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|p| p.1.is_finite())
            .collect();
        pts.sort_by_key(|p| p.0);
        let path: Vec<String> = pts
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", xs.map(*t as f64), ys.map(*v)))
            .collect();
        let dash_attr = if dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dash}""#)
        };
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2"{dash_attr} points="{}"><title>{}</title></polyline>"#,
            path.join(" "),
            esc(&s.name)
        );
        if pts.len() <= 120 {
            for (t, v) in &pts {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"/>"#,
                    xs.map(*t as f64),
                    ys.map(*v)
                );
            }
        }
        // Legend.
        let lx = x0 + 8.0 + i as f64 * 150.0;
        let _ = write!(
            svg,
            r##"<line x1="{lx:.1}" y1="12" x2="{:.1}" y2="12" stroke="{colour}" stroke-width="2"{dash_attr}/><text x="{:.1}" y="16" font-size="12" fill="#1b1f24">{}</text>"##,
            lx + 22.0,
            lx + 26.0,
            esc(&s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_maps_ends_and_middle_and_reverses() {
        let s = Scale::new(0.0, 100.0, 220.0, 20.0);
        assert_eq!(s.map(0.0), 220.0);
        assert_eq!(s.map(100.0), 20.0);
        assert_eq!(s.map(50.0), 120.0);
        let flat = Scale::new(5.0, 5.0, 0.0, 10.0);
        assert_eq!(flat.map(5.0), 5.0);
    }

    #[test]
    fn nice_ticks_cover_the_data_with_round_steps() {
        let (lo, hi, t) = nice_ticks(72.0, 138.0, 5);
        assert!(lo <= 72.0 && hi >= 138.0);
        assert_eq!(t.first().copied(), Some(lo));
        assert_eq!(t.last().copied(), Some(hi));
        let step = t[1] - t[0];
        assert!([10.0, 20.0, 25.0].contains(&step), "step {step}");
        assert!(t.windows(2).all(|w| (w[1] - w[0] - step).abs() < 1e-9));
        // One value: a band around it, not a zero-height axis.
        let (lo, hi, _) = nice_ticks(98.0, 98.0, 5);
        assert!(lo < 98.0 && hi > 98.0);
        // Decimals.
        let (lo, hi, t) = nice_ticks(4.2, 7.9, 5);
        assert!(lo <= 4.2 && hi >= 7.9 && t.len() >= 3);
    }

    #[test]
    fn nice_step_picks_one_two_five() {
        assert_eq!(nice_step(100.0, 5), 20.0);
        assert_eq!(nice_step(1.0, 5), 0.2);
        assert_eq!(nice_step(60.0, 5), 20.0);
        assert_eq!(nice_step(0.0, 5), 1.0);
    }

    #[test]
    fn time_ticks_span_the_interval() {
        assert_eq!(time_ticks(0, 100, 5), vec![0, 25, 50, 75, 100]);
        assert_eq!(time_ticks(7, 7, 5), vec![7]);
        assert_eq!(time_label(0, 1000), "00:00:00");
        assert_eq!(time_label(0, 5 * 3_600_000), "00:00");
        assert_eq!(time_label(0, 10 * 86_400_000), "1970-01-01");
    }

    #[test]
    fn chart_has_title_desc_a_line_per_series_and_points_inside_the_plot() {
        let s = vec![
            Series {
                name: "Systolic".into(),
                points: vec![(1_000, 120.0), (2_000, 130.0), (3_000, 125.0)],
            },
            Series {
                name: "Diastolic".into(),
                points: vec![(1_000, 80.0), (3_000, 85.0)],
            },
            Series {
                name: "Empty".into(),
                points: vec![],
            },
        ];
        let svg = line_chart("bp", "Blood pressure", "mmHg", &s);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("<title id=\"bp-t\">Blood pressure</title>"));
        assert!(svg.contains("<desc id=\"bp-d\">"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(!svg.contains("style="));
        // The highest systolic value sits at the top part of the plot, the lowest diastolic
        // near the bottom: y grows downwards.
        let (lo, hi, _) = nice_ticks(80.0, 130.0, 5);
        let ys = Scale::new(lo, hi, HEIGHT - BOTTOM, TOP);
        assert!(ys.map(130.0) < ys.map(80.0));
        assert!(svg.contains(&format!("{:.1},{:.1}", LEFT, ys.map(120.0))));
        let empty = line_chart("x", "Weight", "kg", &[]);
        assert!(empty.contains("No readings yet"));
        assert!(line_chart("x", "<b>", "kg", &[]).contains("&lt;b&gt;"));
    }
}
