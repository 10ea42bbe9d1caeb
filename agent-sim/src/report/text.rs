//! The report as a compact text summary for the terminal.

use super::*;

impl Report {
    /// Compact human summary for the terminal.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}, started {}\n  {}\n",
            self.title(),
            self.started_at,
            self.setup_line()
        );
        let st = &self.settings;
        let rate = if st.batches_per_s > 0.0 {
            format!("{} batches/s per agent", number(st.batches_per_s))
        } else {
            "closed loop".into()
        };
        s += &format!(
            "  settings: {} records/batch, {rate}, window {}, {}, ramp {}/s, devices {}, {}\n",
            st.records_per_batch,
            st.window,
            st.compression,
            number(st.ramp_per_s),
            st.devices,
            st.agent_version
        );
        for (k, v) in self.key_numbers() {
            s += &format!("  {k:<29} {v}\n");
        }
        let (acks, errors) = (counts_line(&self.acks), counts_line(&self.errors));
        s += &format!("  acks by status                {acks}\n  errors by code                {errors}\n");
        if !self.agents_stopped.is_empty() {
            s += &format!(
                "  agents stopped                {}\n",
                counts_line(&self.agents_stopped)
            );
        }
        let head: String = LATENCY_HEAD[1..].iter().map(|c| format!("{c:>12}")).collect();
        s += &format!("  latency (ms)  {head}\n");
        for (name, l) in [("connect", &self.connect_latency), ("ack", &self.ack_latency)] {
            let cells: String = l.cells().iter().map(|c| format!("{c:>12}")).collect();
            s += &format!("    {name:<10}  {cells}\n");
        }
        match &self.verify {
            None => s += "  verify: not run\n",
            Some(v) => {
                s += &format!("  verify: {}\n", verify_line(v));
                for (kind, d) in discrepancies(v).take(MAX_TEXT_DISCREPANCIES) {
                    let (device, seq, n, detail) = (&d.device, d.seq, d.records, &d.detail);
                    s += &format!("    {kind:<10} device {device} seq {seq} ({n} records): {detail}\n");
                }
                let all = v.missing.len() + v.stale.len() + v.mismatched.len() + v.extra.len();
                let more = all.saturating_sub(MAX_TEXT_DISCREPANCIES);
                if more > 0 {
                    s += &format!("    … and {more} more (see report.json)\n");
                }
            }
        }
        s + &format!("  run: {}\n", self.verdict())
    }
}
