//! Inline SVG plots: throughput, latency and errors over the run's time,
//! and the latency distribution on a percentile axis.

use std::collections::BTreeMap;

use super::*;

/// SVG width and height, px.
pub(super) const W: f64 = 860.0;
pub(super) const H: f64 = 320.0;
/// Plot area: left, right, top, bottom edges, px.
pub(super) const X0: f64 = 70.0;
pub(super) const X1: f64 = W - 70.0;
pub(super) const Y0: f64 = 20.0;
pub(super) const Y1: f64 = H - 50.0;

/// A round step (1, 2 or 5 × 10^k) giving about five ticks up to `max`, and the axis top.
pub(super) fn nice_axis(max: f64) -> (f64, f64) {
    let raw = if max.is_finite() && max > 0.0 { max / 5.0 } else { 0.2 };
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (step, (raw * 5.0 / step).ceil() * step)
}

/// Tick values 0, step, … top of a [`nice_axis`].
pub(super) fn ticks((step, top): (f64, f64)) -> impl Iterator<Item = f64> {
    (0..=(top / step).round() as usize).map(move |i| i as f64 * step)
}

/// Tick label: up to three decimals, trailing zeros dropped.
pub(super) fn fmt_tick(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Plot-area fractions (0–1, clamped; NaN → 0) to px: x from the left edge, y from the bottom.
pub(super) fn px(fx: f64, fy: f64) -> (f64, f64) {
    let f = |v: f64| if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 };
    (X0 + f(fx) * (X1 - X0), Y1 - f(fy) * (Y1 - Y0))
}

/// An SVG plot being drawn; positions are given as plot-area fractions.
pub(super) struct Plot(String);

impl Plot {
    /// Opens the SVG and draws the frame and the axis labels.
    pub(super) fn new(label: &str, x_label: &str, y_label: &str) -> Plot {
        let (label, x_label, y_label) = (esc(label), esc(x_label), esc(y_label));
        let (pw, ph, xm, ym, yl) = (X1 - X0, Y1 - Y0, (X0 + X1) / 2.0, (Y0 + Y1) / 2.0, H - 10.0);
        let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" ");
        s += &format!("viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{label}\">\n");
        s += &format!("<rect x=\"{X0}\" y=\"{Y0}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>\n");
        s += &format!("<text x=\"{xm}\" y=\"{yl}\" text-anchor=\"middle\">{x_label}</text>\n");
        s += &format!("<text transform=\"translate(16 {ym}) rotate(-90)\" text-anchor=\"middle\">{y_label}</text>\n");
        Plot(s)
    }

    /// A labelled x tick with a vertical grid line.
    pub(super) fn x_tick(&mut self, fx: f64, label: &str) {
        let ((x, _), (ty, label)) = (px(fx, 0.0), (Y1 + 18.0, esc(label)));
        self.0 += &format!("<line x1=\"{x:.1}\" y1=\"{Y0}\" x2=\"{x:.1}\" y2=\"{Y1}\" stroke=\"#eee\"/>");
        self.0 += &format!("<text x=\"{x:.1}\" y=\"{ty}\" text-anchor=\"middle\">{label}</text>\n");
    }

    /// A labelled y tick: on the left with a grid line, or on the right in the given colour.
    pub(super) fn y_tick(&mut self, fy: f64, label: &str, right: Option<&str>) {
        let ((_, y), label) = (px(0.0, fy), esc(label));
        let (xl, xr, ly) = (X0 - 6.0, X1 + 6.0, y + 4.0);
        self.0 += &match right {
            None => {
                format!("<line x1=\"{X0}\" y1=\"{y:.1}\" x2=\"{X1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>")
                    + &format!("<text x=\"{xl}\" y=\"{ly:.1}\" text-anchor=\"end\">{label}</text>\n")
            }
            Some(c) => {
                format!("<line x1=\"{X1}\" y1=\"{y:.1}\" x2=\"{xr}\" y2=\"{y:.1}\" stroke=\"{c}\"/>")
                    + &format!("<text x=\"{xr}\" y=\"{ly:.1}\" style=\"fill:{c}\">{label}</text>\n")
            }
        };
    }

    /// A polyline through the points; `style` holds extra SVG attributes.
    pub(super) fn line(&mut self, points: impl Iterator<Item = (f64, f64)>, style: &str) {
        let pts: Vec<String> = points
            .map(|(fx, fy)| px(fx, fy))
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        self.0 += &format!("<polyline points=\"{}\" fill=\"none\" {style}/>\n", pts.join(" "));
    }

    /// A dot with a hover title.
    pub(super) fn dot(&mut self, (fx, fy): (f64, f64), color: &str, title: &str) {
        let ((x, y), title) = (px(fx, fy), esc(title));
        self.0 +=
            &format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{color}\"><title>{title}</title></circle>\n");
    }

    /// Closes the SVG.
    pub(super) fn finish(self) -> String {
        self.0 + "</svg>"
    }
}

/// A plot that only says "no data".
pub(super) fn empty_svg(label: &str) -> String {
    let mut p = Plot::new(label, "", "");
    let (x, y) = (W / 2.0, H / 2.0);
    p.0 += &format!("<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\">no data</text>\n");
    p.finish()
}

/// Colours of the plotted series (and of error codes, in turn).
pub(super) const BLUE: &str = "#1f77b4";
pub(super) const ORANGE: &str = "#e67e22";
pub(super) const RED: &str = "#c62828";
pub(super) const PALETTE: [&str; 6] = ["#c62828", "#6a1b9a", "#2e7d32", "#ef6c00", "#00838f", "#5d4037"];
/// Polyline styles: records/latency (solid blue), connected agents (dashed orange).
pub(super) const BLUE_LINE: &str = "stroke=\"#1f77b4\" stroke-width=\"2\"";
pub(super) const ORANGE_LINE: &str = "stroke=\"#e67e22\" stroke-width=\"1.5\" stroke-dasharray=\"6 3\"";

/// Draws the x axis of a plot over the run's time: 0 to `end` seconds (the
/// run's end, not past it), ticks at round steps.
pub(super) fn time_axis(p: &mut Plot, end: f64) {
    let (step, _) = nice_axis(end);
    let mut t = 0.0;
    while t <= end * 1.000_001 {
        p.x_tick(t / end, &fmt_tick(t));
        t += step;
    }
}

/// The x fraction of second `t` on a [`time_axis`] ending at `end`.
pub(super) fn at(t: f64, end: f64) -> f64 {
    if end > 0.0 { t / end } else { 0.0 }
}

/// A legend in the bottom margin: (colour, dashed, label) entries.
pub(super) fn legend(p: &mut Plot, entries: &[(&str, bool, &str)]) {
    let (lx, ly) = (X0, H - 14.0);
    p.0 += &format!("<g transform=\"translate({lx} {ly})\">");
    let mut x = 0.0;
    for (color, dashed, label) in entries {
        let dash = if *dashed { " stroke-dasharray=\"6 3\"" } else { "" };
        let (x2, tx) = (x + 20.0, x + 25.0);
        p.0 += &format!("<line x1=\"{x}\" x2=\"{x2}\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>");
        p.0 += &format!("<text x=\"{tx}\" y=\"4\">{}</text>", esc(label));
        x += 40.0 + 7.0 * label.chars().count() as f64;
    }
    p.0 += "</g>\n";
}

/// Records/s per second (left axis) and connected agents (right axis) over time; red dots mark
/// seconds with errors; the legend sits in the bottom margin, left of the x label.
pub(super) fn throughput_svg(tl: &[TimelinePoint], end: f64) -> String {
    if tl.is_empty() || end <= 0.0 {
        return empty_svg("throughput over time");
    }
    let fin = |v: f64| if v.is_finite() { v } else { 0.0 };
    let r_axis = nice_axis(tl.iter().map(|p| fin(p.records_per_s)).fold(0.0, f64::max));
    let a_axis = nice_axis(tl.iter().map(|p| p.connected_agents as f64).fold(0.0, f64::max));
    let mut p = Plot::new("throughput over time", "time (s)", "records acked / s");
    let (xr, ym) = (W - 16.0, (Y0 + Y1) / 2.0);
    p.0 += &format!("<text transform=\"translate({xr} {ym}) rotate(90)\" text-anchor=\"middle\" ");
    p.0 += &format!("style=\"fill:{ORANGE}\">connected agents</text>\n");
    time_axis(&mut p, end);
    ticks(r_axis).for_each(|v| p.y_tick(v / r_axis.1, &fmt_tick(v), None));
    ticks(a_axis).for_each(|v| p.y_tick(v / a_axis.1, &fmt_tick(v), Some(ORANGE)));
    p.line(
        tl.iter().map(|q| (at(q.t_s, end), q.records_per_s / r_axis.1)),
        BLUE_LINE,
    );
    p.line(
        tl.iter()
            .map(|q| (at(q.t_s, end), q.connected_agents as f64 / a_axis.1)),
        ORANGE_LINE,
    );
    for q in tl.iter().filter(|q| q.errors > 0) {
        let (n, t) = (q.errors, fmt_tick(q.t_s));
        p.dot((at(q.t_s, end), 0.0), RED, &format!("{n} errors at {t} s"));
    }
    legend(
        &mut p,
        &[(BLUE, false, "records/s"), (ORANGE, true, "connected agents")],
    );
    p.finish()
}

/// The ACK OK latency of each second, p50 and p99 (ms), over time: to read
/// beside the throughput plot (a latency rise where throughput drops).
pub(super) fn latency_over_time_svg(tl: &[TimelinePoint], end: f64) -> String {
    let max = tl
        .iter()
        .filter_map(|q| q.ack_p99_ms)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    if max <= 0.0 || end <= 0.0 {
        return empty_svg("ack latency over time");
    }
    let axis = nice_axis(max);
    let mut p = Plot::new("ack latency over time", "time (s)", "ack latency (ms)");
    time_axis(&mut p, end);
    ticks(axis).for_each(|v| p.y_tick(v / axis.1, &fmt_tick(v), None));
    let series = |pick: fn(&TimelinePoint) -> Option<f64>| {
        tl.iter()
            .filter_map(move |q| pick(q).filter(|v| v.is_finite()).map(|v| (at(q.t_s, end), v / axis.1)))
    };
    p.line(series(|q| q.ack_p50_ms), BLUE_LINE);
    p.line(series(|q| q.ack_p99_ms), ORANGE_LINE);
    legend(&mut p, &[(BLUE, false, "p50"), (ORANGE, true, "p99")]);
    p.finish()
}

/// Errors of each second by code over time, one line per code (the six
/// most frequent; the rest summed as "other").
pub(super) fn errors_svg(tl: &[TimelinePoint], end: f64) -> String {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for q in tl {
        for (code, n) in &q.errors_by_code {
            *totals.entry(code).or_default() += n;
        }
    }
    if totals.is_empty() || end <= 0.0 {
        return empty_svg("errors over time");
    }
    let mut codes: Vec<(&str, u64)> = totals.into_iter().collect();
    codes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let shown: Vec<&str> = codes.iter().take(PALETTE.len() - 1).map(|c| c.0).collect();
    let other = codes.len() > shown.len();
    let count = |q: &TimelinePoint, code: Option<&str>| -> u64 {
        match code {
            Some(c) => q.errors_by_code.get(c).copied().unwrap_or(0),
            None => q
                .errors_by_code
                .iter()
                .filter(|(c, _)| !shown.contains(&c.as_str()))
                .map(|(_, n)| n)
                .sum(),
        }
    };
    let series: Vec<Option<&str>> = shown.iter().map(|c| Some(*c)).chain(other.then_some(None)).collect();
    let max = tl
        .iter()
        .flat_map(|q| series.iter().map(move |c| count(q, *c)))
        .max()
        .unwrap_or(0);
    let axis = nice_axis(max as f64);
    let mut p = Plot::new("errors over time", "time (s)", "errors / s");
    time_axis(&mut p, end);
    ticks(axis).for_each(|v| p.y_tick(v / axis.1, &fmt_tick(v), None));
    let mut entries = Vec::new();
    for (i, code) in series.iter().enumerate() {
        let color = PALETTE[i];
        let style = format!("stroke=\"{color}\" stroke-width=\"1.5\"");
        p.line(
            tl.iter().map(|q| (at(q.t_s, end), count(q, *code) as f64 / axis.1)),
            &style,
        );
        entries.push((color, false, code.unwrap_or("other")));
    }
    legend(&mut p, &entries);
    p.finish()
}

/// The percentile axis ends at the highest percentile `samples` can tell
/// apart from the maximum: log10(samples) nines, rounded down (1,000
/// samples: 99.9%; 20,000: 99.99%), between 1 and 6, so that high
/// percentiles are not squeezed together.
pub(super) fn nines_axis(samples: u64) -> f64 {
    (samples.max(1) as f64).log10().floor().clamp(1.0, 6.0)
}

/// Position of percentile `p` (0–100) on the "number of nines" axis, capped at `top`.
pub(super) fn nines(p: f64, top: f64) -> f64 {
    let q = 1.0 - (p / 100.0).clamp(0.0, 1.0);
    if q <= 0.0 {
        top
    } else {
        (1.0 / q).log10().clamp(0.0, top)
    }
}

/// Label of the tick `i` nines along: 0%, 90%, 99%, 99.9%, …
pub(super) fn nines_label(i: usize) -> String {
    match i {
        0 => "0%".into(),
        1 => "90%".into(),
        _ => format!("99.{}%", "9".repeat(i - 2)).replace("99.%", "99%"),
    }
}

/// ACK latency (y, ms; log scale if max/min > 100) against percentile on
/// the log10(1/(1−p)) scale, up to what `samples` can tell ([`nines_axis`]);
/// the maximum is drawn at the axis' end.
pub(super) fn latency_svg(points: &[PercentilePoint], samples: u64) -> String {
    let top = nines_axis(samples);
    let points: Vec<&PercentilePoint> = points
        .iter()
        .filter(|p| p.latency_ms.is_finite())
        // (Rounding puts 99.999 at 4.99999…: it is at 5 nines.)
        .filter(|p| p.percentile >= 100.0 || nines(p.percentile, f64::INFINITY) < top - 1e-6)
        .collect();
    let max = points.iter().map(|p| p.latency_ms).fold(0.0, f64::max);
    if max <= 0.0 {
        return empty_svg("ack latency distribution");
    }
    let min_pos = points
        .iter()
        .map(|p| p.latency_ms)
        .filter(|v| *v > 0.0)
        .fold(max, f64::min);
    let log = max / min_pos > 100.0;
    let y_label = if log { "latency (ms, log scale)" } else { "latency (ms)" };
    let mut p = Plot::new("ack latency distribution", "percentile (right end: max)", y_label);
    let (lo, hi) = (min_pos.log10().floor(), max.log10().ceil());
    let linear = nice_axis(max);
    let fy = |v: f64| {
        if log {
            (v.max(10f64.powf(lo)).log10() - lo) / (hi - lo)
        } else {
            v / linear.1
        }
    };
    let y_ticks: Vec<f64> = if log {
        (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        ticks(linear).collect()
    };
    y_ticks.iter().for_each(|&v| p.y_tick(fy(v), &fmt_tick(v), None));
    for i in 0..=top as usize {
        p.x_tick(i as f64 / top, &nines_label(i));
    }
    let xy = |q: &PercentilePoint| (nines(q.percentile, top) / top, fy(q.latency_ms));
    p.line(points.iter().map(|q| xy(q)), BLUE_LINE);
    for q in &points {
        let (pct, ms) = (q.percentile, q.latency_ms);
        p.dot(xy(q), BLUE, &format!("p{pct}: {ms:.3} ms"));
    }
    p.finish()
}
