//! Proptest strategies for valid AWP/1 values, shared by the property tests.
#![allow(dead_code)]

use std::borrow::Cow;

use awp_protocol::{
    Ack, AckStatus, AppUsage, Attr, AttrValue, Batch, Channel, Compression, CompressionSet, Direction, ErrorFrame,
    Event, Frame, GoAway, Hello, HelloAuth, Location, Message, NetUsage, Network, Platform, Record, RecordBody,
    Unknown, Welcome, is_storable_float, truncate_utf8,
};
use proptest::prelude::*;

/// A frame with a valid header and CRC around arbitrary payload bytes, so
/// that the payload decoders (not just the CRC check) see the input.
pub fn framed(frame_type: u8, flags: u8, payload: &[u8]) -> bytes::Bytes {
    use bytes::BufMut;
    let mut buf = bytes::BytesMut::new();
    buf.put_u8(frame_type);
    buf.put_u8(flags);
    buf.put_u16(0);
    buf.put_u32(payload.len() as u32);
    buf.put_u32(awp_protocol::crc(payload));
    buf.put_slice(payload);
    buf.freeze()
}

/// A string of `min..=max` bytes of any characters.
pub fn text(min: usize, max: usize) -> impl Strategy<Value = Cow<'static, str>> {
    prop::collection::vec(any::<char>(), min..=max).prop_map(move |chars| {
        let s: String = chars.into_iter().collect();
        let mut s = truncate_utf8(Cow::Owned(s), max).into_owned();
        while s.len() < min {
            s.push('x');
        }
        Cow::Owned(s)
    })
}

pub fn bytes(max: usize) -> impl Strategy<Value = Cow<'static, [u8]>> {
    prop::collection::vec(any::<u8>(), 0..=max).prop_map(Cow::Owned)
}

pub fn storable_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(1e-130),
        Just(-9.99e125),
        (1e-130f64..9.99e125, any::<bool>()).prop_map(|(v, neg)| if neg { -v } else { v }),
        any::<f64>().prop_filter("storable", |v| is_storable_float(*v)),
    ]
}

pub fn attr_value() -> impl Strategy<Value = AttrValue<'static>> {
    prop_oneof![
        Just(AttrValue::Null),
        any::<bool>().prop_map(AttrValue::Bool),
        any::<i64>().prop_map(AttrValue::Int),
        storable_float().prop_map(AttrValue::Float),
        text(0, 64).prop_map(AttrValue::String),
        bytes(64).prop_map(AttrValue::Bytes),
    ]
}

pub fn event() -> impl Strategy<Value = Event<'static>> {
    (
        text(1, 128),
        prop::collection::btree_map("[a-zA-Z0-9_é]{1,16}", attr_value(), 0..=12),
    )
        .prop_map(|(name, attrs)| Event {
            name,
            attrs: attrs
                .into_iter()
                .map(|(key, value)| Attr {
                    key: Cow::Owned(key),
                    value,
                })
                .collect(),
        })
}

pub fn record_body() -> impl Strategy<Value = RecordBody<'static>> {
    prop_oneof![
        (
            -900_000_000..=900_000_000i32,
            -1_800_000_000..=1_800_000_000i32,
            0..=1_000_000u64
        )
            .prop_map(|(lat_e7, lon_e7, accuracy_m)| RecordBody::Location(Location {
                lat_e7,
                lon_e7,
                accuracy_m
            })),
        (text(1, 256), text(0, 512), any::<u64>()).prop_map(|(app, title, foreground_ms)| RecordBody::AppUsage(
            AppUsage {
                app,
                title,
                foreground_ms
            }
        )),
        (
            text(0, 256),
            prop::sample::select(Network::ALL),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(app, network, bytes_tx, bytes_rx)| RecordBody::NetUsage(NetUsage {
                app,
                network,
                bytes_tx,
                bytes_rx
            })),
        (
            prop::sample::select(Direction::ALL),
            prop::sample::select(Channel::ALL),
            text(0, 256),
            any::<u64>()
        )
            .prop_map(|(direction, channel, peer, size)| RecordBody::Message(Message {
                direction,
                channel,
                peer,
                size
            })),
        event().prop_map(RecordBody::Event),
        (6..=u64::MAX, bytes(128)).prop_map(|(kind, body)| RecordBody::Unknown(Unknown { kind, body })),
    ]
}

/// A valid batch: offsets keep every record time within 0..=u64::MAX.
pub fn batch(max_records: usize) -> impl Strategy<Value = Batch<'static>> {
    (
        1..=u64::MAX,
        prop_oneof![Just(0u64), 0..=(1u64 << 45), Just(u64::MAX)],
        prop::collection::vec((any::<i64>(), record_body()), 1..=max_records),
    )
        .prop_map(|(seq, base_time_ms, records)| Batch {
            seq,
            base_time_ms,
            records: records
                .into_iter()
                .map(|(offset, body)| {
                    // Fold the offset into the range that keeps the time valid.
                    let lo = -(base_time_ms.min(i64::MAX as u64) as i128);
                    let hi = (u64::MAX - base_time_ms).min(i64::MAX as u64) as i128;
                    let span = (hi - lo + 1) as u128;
                    let time_offset_ms = (lo + ((offset as i128 as u128) % span) as i128) as i64;
                    Record { time_offset_ms, body }
                })
                .collect(),
        })
}

pub fn compression() -> impl Strategy<Value = Compression> {
    prop::sample::select(vec![Compression::None, Compression::Lz4, Compression::Zstd])
}

pub fn frame() -> impl Strategy<Value = Frame> {
    let hello = (
        (1..=u8::MAX).prop_flat_map(|min| (Just(min), min..=u8::MAX)),
        "[A-Za-z0-9_.-]{1,64}",
        "[A-Za-z0-9_.:@-]{1,128}",
        prop::sample::select(Platform::ALL.to_vec()),
        text(0, 64),
        0..=3u8,
        prop_oneof![
            (any::<u64>(), any::<[u8; 32]>()).prop_map(|(expiry, token)| HelloAuth::Token { expiry, token }),
            Just(HelloAuth::ClientCert),
        ],
    )
        .prop_map(
            |((min_version, max_version), tenant_id, device_id, platform, agent_version, compression, auth)| {
                Frame::Hello(Hello {
                    min_version,
                    max_version,
                    tenant_id,
                    device_id,
                    platform,
                    agent_version: agent_version.into_owned(),
                    compression: CompressionSet::from_bits(compression).unwrap(),
                    auth,
                })
            },
        );
    let welcome = (
        1..=u8::MAX,
        any::<[u8; 16]>(),
        65_536..=u32::MAX as u64,
        1..=u64::MAX,
        1..=u64::MAX,
        any::<u64>(),
        0..=3u8,
    )
        .prop_map(
            |(version, session_id, max_frame_len, max_batch_records, max_inflight, heartbeat_ms, c)| {
                Frame::Welcome(Welcome {
                    version,
                    session_id,
                    max_frame_len,
                    max_batch_records,
                    max_inflight,
                    heartbeat_ms,
                    compression: CompressionSet::from_bits(c).unwrap(),
                })
            },
        );
    let ack = (1..=u64::MAX, 0..3u8, any::<u64>(), text(0, 512)).prop_map(|(seq, status, retry, message)| {
        Frame::Ack(match status {
            0 => Ack::ok(seq),
            1 => Ack::retry(seq, retry, &message),
            _ => Ack {
                seq,
                status: AckStatus::Rejected,
                retry_after_ms: 0,
                message: message.into_owned(),
            },
        })
    });
    prop_oneof![
        hello,
        welcome,
        ack,
        any::<u64>().prop_map(Frame::Ping),
        any::<u64>().prop_map(Frame::Pong),
        (any::<u64>(), text(0, 256)).prop_map(|(ms, reason)| Frame::GoAway(GoAway {
            reconnect_after_ms: ms,
            reason: reason.into_owned()
        })),
        (any::<u16>(), text(0, 512)).prop_map(|(code, message)| Frame::Error(ErrorFrame {
            code,
            message: message.into_owned()
        })),
        Just(Frame::Bye),
    ]
}
