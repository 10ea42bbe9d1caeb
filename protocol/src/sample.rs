//! Sample records for benchmarks and the load simulator: a deterministic
//! mix of record kinds with the field sizes agents in the field send.
//! (Feature `sample`.)
//!
//! The default [`Mix`] (by count): 30% LOCATION, 25% APP_USAGE, 15%
//! NET_USAGE, 15% MESSAGE, 15% EVENT with 2–4 attributes; about 28 bytes a
//! record on the wire.

use std::borrow::Cow;

use crate::batch::{
    AppUsage, Attr, AttrValue, Batch, Channel, Direction, Event, Location, Message, NetUsage, Network, Record,
    RecordBody,
};

/// Relative weights of the record kinds in generated batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    /// LOCATION weight.
    pub location: u32,
    /// APP_USAGE weight.
    pub app_usage: u32,
    /// NET_USAGE weight.
    pub net_usage: u32,
    /// MESSAGE weight.
    pub message: u32,
    /// EVENT weight.
    pub event: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            location: 30,
            app_usage: 25,
            net_usage: 15,
            message: 15,
            event: 15,
        }
    }
}

const APPS: &[&str] = &[
    "com.whatsapp",
    "com.android.chrome",
    "com.google.android.youtube",
    "com.instagram.android",
    "chrome.exe",
    "Teams.exe",
    "com.apple.Safari",
    "org.mozilla.firefox",
];

const TITLES: &[&str] = &[
    "",
    "Inbox – Mail",
    "YouTube - Home",
    "Quarterly report.xlsx - Excel",
    "Chats",
    "New tab",
];

const EVENTS: &[&str] = &["battery", "screen_on", "app_install", "boot", "geofence_exit"];

/// A batch of `records` records of the default mix, the same for the same `seed`.
pub fn typical_batch(seq: u64, records: usize, seed: u64) -> Batch<'static> {
    batch(seq, records, seed, &Mix::default())
}

/// A batch of `records` records of `mix`, the same for the same `seed`.
pub fn batch(seq: u64, records: usize, seed: u64, mix: &Mix) -> Batch<'static> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let base_time_ms = 1_764_000_000_000;
    let records = (0..records)
        .map(|i| Record {
            time_offset_ms: i as i64 * 1000 - rng.i64(0..500),
            body: record_body(&mut rng, mix),
        })
        .collect();
    Batch {
        seq,
        base_time_ms,
        records,
    }
}

fn pick<'a>(rng: &mut fastrand::Rng, items: &[&'a str]) -> &'a str {
    items[rng.usize(..items.len())]
}

/// One record body drawn from `mix`.
pub fn record_body(rng: &mut fastrand::Rng, mix: &Mix) -> RecordBody<'static> {
    let total = (mix.location + mix.app_usage + mix.net_usage + mix.message + mix.event).max(1);
    let mut r = rng.u32(0..total);
    let mut take = |w: u32| {
        let hit = r < w;
        r = r.saturating_sub(w);
        hit
    };
    if take(mix.location) {
        RecordBody::Location(Location {
            lat_e7: 525_200_066 + rng.i32(-500_000..500_000),
            lon_e7: 134_049_540 + rng.i32(-500_000..500_000),
            accuracy_m: rng.u64(3..60),
        })
    } else if take(mix.app_usage) {
        RecordBody::AppUsage(AppUsage {
            app: Cow::Borrowed(pick(rng, APPS)),
            title: Cow::Borrowed(pick(rng, TITLES)),
            foreground_ms: rng.u64(1_000..600_000),
        })
    } else if take(mix.net_usage) {
        RecordBody::NetUsage(NetUsage {
            app: Cow::Borrowed(pick(rng, APPS)),
            network: Network::ALL[rng.usize(..Network::ALL.len())],
            bytes_tx: rng.u64(0..10_000_000),
            bytes_rx: rng.u64(0..100_000_000),
        })
    } else if take(mix.message) {
        RecordBody::Message(Message {
            direction: Direction::ALL[rng.usize(..2)],
            channel: Channel::ALL[rng.usize(..Channel::ALL.len())],
            peer: Cow::Owned(format!("+1555{:07}", rng.u32(0..10_000_000))),
            size: rng.u64(0..2_000),
        })
    } else {
        let n = rng.usize(2..=4);
        let attrs = (0..n)
            .map(|k| Attr {
                key: Cow::Borrowed(["level", "charging", "temp_c", "source"][k]),
                value: match k {
                    0 => AttrValue::Int(rng.i64(0..=100)),
                    1 => AttrValue::Bool(rng.bool()),
                    2 => AttrValue::Float(20.0 + rng.f64() * 20.0),
                    _ => AttrValue::String(Cow::Borrowed("usb")),
                },
            })
            .collect();
        RecordBody::Event(Event {
            name: Cow::Borrowed(pick(rng, EVENTS)),
            attrs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;

    #[test]
    fn batches_are_valid_deterministic_and_follow_the_mix() {
        let a = typical_batch(1, 1000, 7);
        assert_eq!(a, typical_batch(1, 1000, 7));
        a.check(&Limits::DEFAULT).unwrap();
        let locations = a.records.iter().filter(|r| r.kind() == 1).count();
        assert!((250..350).contains(&locations), "{locations}");
        let only_events = batch(
            1,
            200,
            1,
            &Mix {
                location: 0,
                app_usage: 0,
                net_usage: 0,
                message: 0,
                event: 1,
            },
        );
        assert!(only_events.records.iter().all(|r| r.kind() == 5));
    }
}
