//! How values with a unit are written in the file and read into types:
//! times as milliseconds (the `_ms` keys) into `Duration`s, codecs as
//! names into a [`CompressionSet`].

use std::time::Duration;

use awp_protocol::{Compression, CompressionSet};
use serde::{Deserialize, Deserializer};

/// A `Duration` written as whole milliseconds.
pub fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

/// A `Duration` written as whole milliseconds, 0 meaning never (`None`).
pub fn millis_or_never<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    u64::deserialize(d).map(|ms| (ms > 0).then(|| Duration::from_millis(ms)))
}

/// A codec's name in the file.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Codec {
    Lz4,
    Zstd,
}

/// A list of codec names (`["lz4", "zstd"]`) as a set.
pub fn codecs<'de, D: Deserializer<'de>>(d: D) -> Result<CompressionSet, D::Error> {
    let names = Vec::<Codec>::deserialize(d)?;
    Ok(names.into_iter().fold(CompressionSet::NONE, |set, codec| {
        set.with(match codec {
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        })
    }))
}

/// `d` in whole milliseconds, for messages and the wire.
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
