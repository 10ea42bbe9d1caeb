//! The report as one self-contained HTML page (no scripts, no external
//! resources): verdict, settings, numbers, the plots of `svg.rs`, tables.

use super::*;

use super::svg::*;

impl Report {
    /// One self-contained HTML page: verdict, settings, key numbers, plots
    /// over time (throughput, latency, errors by code), the latency
    /// distribution, acks/errors tables and the verify section.
    pub fn to_html(&self) -> String {
        let (title, setup) = (esc(&self.title()), esc(&self.setup_line()));
        let mut h = String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        h += &format!("<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n");
        h += &format!("<p>{setup}</p>\n");
        if self.problems.is_empty() {
            h += "<p class=\"ok\">Run OK.</p>\n";
        } else {
            h += "<p class=\"bad\">Run FAILED:</p>\n<ul class=\"bad\">\n";
            h += &self
                .problems
                .iter()
                .map(|p| format!("<li>{}</li>\n", esc(p)))
                .collect::<String>();
            h += "</ul>\n";
        }
        let rows = |pairs: Vec<(&str, String)>| -> Vec<Vec<String>> {
            pairs.into_iter().map(|(k, v)| vec![k.into(), v]).collect()
        };
        h += &format!(
            "<h2>Settings</h2>\n{}",
            table(&["", "value"], &rows(self.settings_rows()))
        );
        h += &format!(
            "<h2>Key numbers</h2>\n{}",
            table(&["", "value"], &rows(self.key_numbers()))
        );
        let lat = [
            ("connect → WELCOME", &self.connect_latency),
            ("batch → ACK OK", &self.ack_latency),
        ];
        let lat: Vec<Vec<String>> = lat
            .iter()
            .map(|(n, l)| [vec![n.to_string()], l.cells()].concat())
            .collect();
        h += &format!("<h2>Latency (ms)</h2>\n{}", table(&LATENCY_HEAD, &lat));
        let end = self.duration_s.max(self.timeline.last().map_or(0.0, |p| p.t_s));
        h += &format!(
            "<h2>Throughput over time</h2>\n{}\n",
            throughput_svg(&self.timeline, end)
        );
        h += &format!(
            "<h2>ACK latency over time</h2>\n{}\n",
            latency_over_time_svg(&self.timeline, end)
        );
        h += "<h2>Errors over time</h2>\n";
        h += &if self.errors.is_empty() {
            "<p>No errors.</p>\n".to_owned()
        } else {
            format!("{}\n", errors_svg(&self.timeline, end))
        };
        h += &format!(
            "<h2>ACK latency distribution</h2>\n{}\n",
            latency_svg(&self.ack_latency_percentiles, self.ack_latency.count)
        );
        let acks: Vec<Vec<String>> = self.acks.iter().map(|(k, v)| vec![k.clone(), v.to_string()]).collect();
        h += &format!(
            "<h2>ACKs</h2>\n{}",
            or_sentence(table(&["status", "count"], &acks), "No ACKs.")
        );
        let errors: Vec<Vec<String>> = self
            .errors
            .iter()
            .map(|(k, v)| vec![k.clone(), v.to_string()])
            .collect();
        h += &format!(
            "<h2>Errors</h2>\n{}",
            or_sentence(table(&["code", "count"], &errors), "No errors.")
        );
        if !self.agents_stopped.is_empty() {
            let stopped: Vec<Vec<String>> = self
                .agents_stopped
                .iter()
                .map(|(k, v)| vec![k.clone(), v.to_string()])
                .collect();
            h += &format!("<h2>Agents stopped</h2>\n{}", table(&["by", "agents"], &stopped));
        }
        h += "<h2>Verify</h2>\n";
        match &self.verify {
            None => h += "<p>Not run (<code>--verify-sqlite</code> or <code>--verify-dynamodb</code>).</p>\n",
            Some(v) => {
                let class = if v.ok { "ok" } else { "bad" };
                h += &format!("<p class=\"{class}\">{}</p>\n", esc(&verify_line(v)));
                let rows: Vec<Vec<String>> = discrepancies(v)
                    .take(MAX_HTML_DISCREPANCIES)
                    .map(|(kind, d)| {
                        let (seq, n) = (d.seq.to_string(), d.records.to_string());
                        vec![kind.into(), d.device.clone(), seq, n, d.detail.clone()]
                    })
                    .collect();
                h += &table(&["kind", "device", "seq", "records", "detail"], &rows);
            }
        }
        h + "</body>\n</html>\n"
    }
}

/// Style sheet of the HTML page.
pub(super) const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:960px}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.ok{color:#1a7f37}.bad{color:#c62828}
svg{border:1px solid #ddd}svg text{font-size:12px;fill:#333}";

/// A table row of `tag` ("td" or "th") cells, each escaped.
pub(super) fn tr<S: AsRef<str>>(tag: &str, cells: &[S]) -> String {
    let cells: String = cells
        .iter()
        .map(|c| format!("<{tag}>{}</{tag}>", esc(c.as_ref())))
        .collect();
    format!("<tr>{cells}</tr>\n")
}

/// A table with header `head` and `rows`; nothing when there are no rows.
pub(super) fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let body: String = rows.iter().map(|r| tr("td", r)).collect();
    format!("<table>\n{}{body}</table>\n", tr("th", head))
}

/// `html`, or a paragraph saying `sentence` when it is empty.
pub(super) fn or_sentence(html: String, sentence: &str) -> String {
    if html.is_empty() {
        format!("<p>{}</p>\n", esc(sentence))
    } else {
        html
    }
}
