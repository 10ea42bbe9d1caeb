//! Typical AWP/1 batches for the codec benchmarks: a deterministic mix of
//! record kinds with the sizes agents in the field send.
//!
//! The mix (by count): 30% LOCATION, 25% APP_USAGE, 15% NET_USAGE,
//! 15% MESSAGE, 15% EVENT with 2–4 attributes; about 38 bytes a record on
//! the wire on average.
#![forbid(unsafe_code)]

use std::borrow::Cow;

use awp_protocol::{
    AppUsage, Attr, AttrValue, Batch, Channel, Direction, Event, Location, Message, NetUsage, Network, Record,
    RecordBody,
};

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

/// A batch of `records` records, the same for the same `seed`.
pub fn typical_batch(seq: u64, records: usize, seed: u64) -> Batch<'static> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let base_time_ms = 1_764_000_000_000;
    let records = (0..records)
        .map(|i| Record {
            time_offset_ms: i as i64 * 1000 - rng.i64(0..500),
            body: record_body(&mut rng),
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

fn record_body(rng: &mut fastrand::Rng) -> RecordBody<'static> {
    match rng.u32(0..100) {
        0..30 => RecordBody::Location(Location {
            lat_e7: 525_200_066 + rng.i32(-500_000..500_000),
            lon_e7: 134_049_540 + rng.i32(-500_000..500_000),
            accuracy_m: rng.u64(3..60),
        }),
        30..55 => RecordBody::AppUsage(AppUsage {
            app: Cow::Borrowed(pick(rng, APPS)),
            title: Cow::Borrowed(pick(rng, TITLES)),
            foreground_ms: rng.u64(1_000..600_000),
        }),
        55..70 => RecordBody::NetUsage(NetUsage {
            app: Cow::Borrowed(pick(rng, APPS)),
            network: Network::ALL[rng.usize(..Network::ALL.len())],
            bytes_tx: rng.u64(0..10_000_000),
            bytes_rx: rng.u64(0..100_000_000),
        }),
        70..85 => RecordBody::Message(Message {
            direction: Direction::ALL[rng.usize(..2)],
            channel: Channel::ALL[rng.usize(..Channel::ALL.len())],
            peer: Cow::Owned(format!("+1555{:07}", rng.u32(0..10_000_000))),
            size: rng.u64(0..2_000),
        }),
        _ => {
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
}
