//! Frames: the streaming decode (`check`, then `parse`), and every frame type
//! but BATCH's content (see [`crate::batch`]).

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch::BatchFrame;
use crate::error::{EncodeError, ErrorCode, FieldError, FrameError, Problem};
pub use crate::header::FrameType;
use crate::header::{HEADER_LEN, Header, encode_frame};
use crate::limits::{Compression, CompressionSet, Limits};
use crate::wire::{
    self, Res, bytes_field, check_len, check_range, end, fail, field_error, put_bytes, put_str, put_varint, str_field,
    u8_field, u16_field, u64_field, varint,
};

/// The result of a decode step on a buffer that may hold a partial frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded<T> {
    /// A whole value, and how many bytes of the buffer it used.
    Complete(T, usize),
    /// The buffer ends inside the value: at least this many more bytes are needed.
    Incomplete(usize),
}

/// Checks the start of `buf` for a frame: the header's own checks, the length
/// against the limit, and whether the whole frame has arrived.
///
/// A header that fails is refused here, from its 12 bytes alone, before any
/// of its payload is buffered. `Decoded::Complete` gives the header and the
/// frame's whole length; the payload is `buf[HEADER_LEN..len]`.
pub fn check(buf: &[u8], limits: &Limits) -> Result<Decoded<Header>, FrameError> {
    let Some(header_bytes) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(Decoded::Incomplete(HEADER_LEN - buf.len()));
    };
    let header = Header::parse(header_bytes)?;
    header.check_length(limits)?;
    let frame_len = header.frame_len();
    if buf.len() < frame_len {
        return Ok(Decoded::Incomplete(frame_len - buf.len()));
    }
    Ok(Decoded::Complete(header, frame_len))
}

/// Decodes the first frame of `buf`, sharing its memory: `check`, then
/// [`Frame::parse`] on a slice of `buf`.
pub fn decode(buf: &Bytes, limits: &Limits) -> Result<Decoded<Frame>, FrameError> {
    match check(buf, limits)? {
        Decoded::Incomplete(n) => Ok(Decoded::Incomplete(n)),
        Decoded::Complete(header, len) => {
            let frame = Frame::parse(&header, buf.slice(HEADER_LEN..len), limits)?;
            Ok(Decoded::Complete(frame, len))
        }
    }
}

/// One AWP/1 frame, decoded.
///
/// Every variant holds values that satisfy AWP1.md's rules: the decoder
/// refuses anything else, and the encoder checks the same rules.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// C→S: protocol versions, identity and authentication.
    Hello(Hello),
    /// S→C: the session's parameters.
    Welcome(Welcome),
    /// C→S: records; the content is decoded separately ([`BatchFrame::decode`]).
    Batch(BatchFrame),
    /// S→C: the answer to one BATCH.
    Ack(Ack),
    /// Both: liveness probe with a nonce.
    Ping(u64),
    /// Both: the answer to a PING, with its nonce.
    Pong(u64),
    /// S→C: the server is draining.
    GoAway(GoAway),
    /// Both: a fatal error.
    Error(ErrorFrame),
    /// C→S: the client is done.
    Bye,
}

impl Frame {
    /// The frame's type.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Hello(_) => FrameType::Hello,
            Frame::Welcome(_) => FrameType::Welcome,
            Frame::Batch(_) => FrameType::Batch,
            Frame::Ack(_) => FrameType::Ack,
            Frame::Ping(_) => FrameType::Ping,
            Frame::Pong(_) => FrameType::Pong,
            Frame::GoAway(_) => FrameType::GoAway,
            Frame::Error(_) => FrameType::Error,
            Frame::Bye => FrameType::Bye,
        }
    }

    /// Decodes a payload whose header passed [`check`]: verifies the CRC
    /// first, then decodes the payload, which must be consumed exactly.
    ///
    /// For a BATCH only the frame level is decoded here (compression and
    /// `seq`); its records are decoded by [`BatchFrame::decode`], whose
    /// errors are answered with ACK REJECTED rather than ERROR.
    pub fn parse(header: &Header, payload: Bytes, limits: &Limits) -> Result<Frame, FrameError> {
        header.check_crc(&payload)?;
        let frame_type = header.frame_type;
        let malformed = |e: FieldError| FrameError::malformed(frame_type, e);
        let whole = |r: Res<'_, Frame>| -> Result<Frame, FrameError> {
            let (rest, frame) = r.map_err(|e| malformed(field_error(e)))?;
            end(rest, "payload").map_err(malformed)?;
            Ok(frame)
        };
        match frame_type {
            FrameType::Hello => whole(Hello::parse(&payload).map(|(r, h)| (r, Frame::Hello(h)))),
            FrameType::Welcome => whole(Welcome::parse(&payload).map(|(r, w)| (r, Frame::Welcome(w)))),
            FrameType::Batch => BatchFrame::parse(header.compression, payload, limits).map(Frame::Batch),
            FrameType::Ack => whole(Ack::parse(&payload).map(|(r, a)| (r, Frame::Ack(a)))),
            FrameType::Ping => whole(u64_field(&payload, "nonce").map(|(r, n)| (r, Frame::Ping(n)))),
            FrameType::Pong => whole(u64_field(&payload, "nonce").map(|(r, n)| (r, Frame::Pong(n)))),
            FrameType::GoAway => whole(GoAway::parse(&payload).map(|(r, g)| (r, Frame::GoAway(g)))),
            FrameType::Error => whole(ErrorFrame::parse(&payload).map(|(r, e)| (r, Frame::Error(e)))),
            FrameType::Bye => whole(Ok((&payload[..], Frame::Bye))),
        }
    }

    /// Appends the encoded frame to `dst`, after checking every rule the
    /// decoder checks. A BATCH is written with the compression it was
    /// decoded with (compressed bytes may differ from the original's; the
    /// content is the same).
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let frame_type = self.frame_type();
        let field_err = |error| EncodeError::Field { frame_type, error };
        match self {
            Frame::Batch(batch) => batch.encode(dst),
            Frame::Hello(h) => {
                h.check().map_err(field_err)?;
                encode_frame(dst, frame_type, Compression::None, |b| {
                    h.write(b);
                    Ok::<(), EncodeError>(())
                })
            }
            Frame::Welcome(w) => {
                w.check().map_err(field_err)?;
                encode_frame(dst, frame_type, Compression::None, |b| {
                    w.write(b);
                    Ok::<(), EncodeError>(())
                })
            }
            Frame::Ack(a) => {
                a.check().map_err(field_err)?;
                encode_frame(dst, frame_type, Compression::None, |b| {
                    a.write(b);
                    Ok::<(), EncodeError>(())
                })
            }
            Frame::Ping(nonce) | Frame::Pong(nonce) => encode_frame(dst, frame_type, Compression::None, |b| {
                b.put_u64(*nonce);
                Ok::<(), EncodeError>(())
            }),
            Frame::GoAway(g) => {
                g.check().map_err(field_err)?;
                encode_frame(dst, frame_type, Compression::None, |b| {
                    put_varint(b, g.reconnect_after_ms);
                    put_str(b, &g.reason);
                    Ok::<(), EncodeError>(())
                })
            }
            Frame::Error(e) => {
                e.check().map_err(field_err)?;
                encode_frame(dst, frame_type, Compression::None, |b| {
                    b.put_u16(e.code);
                    put_str(b, &e.message);
                    Ok::<(), EncodeError>(())
                })
            }
            Frame::Bye => encode_frame(dst, frame_type, Compression::None, |_| Ok::<(), EncodeError>(())),
        }
    }

    /// The encoded frame as a new buffer.
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::new();
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }
}

/// Agent platforms (HELLO `platform`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Platform {
    /// 0: not stated.
    Unknown = 0,
    /// 1
    Android = 1,
    /// 2
    Windows = 2,
    /// 3
    MacOs = 3,
    /// 4
    Linux = 4,
    /// 5
    Ios = 5,
}

impl Platform {
    /// Every platform, in wire order.
    pub const ALL: [Platform; 6] = [
        Platform::Unknown,
        Platform::Android,
        Platform::Windows,
        Platform::MacOs,
        Platform::Linux,
        Platform::Ios,
    ];

    /// The platform for a wire value.
    pub fn from_u8(v: u8) -> Option<Platform> {
        Platform::ALL.get(usize::from(v)).copied()
    }

    /// The name stored in items (`android`, `macos`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Unknown => "unknown",
            Platform::Android => "android",
            Platform::Windows => "windows",
            Platform::MacOs => "macos",
            Platform::Linux => "linux",
            Platform::Ios => "ios",
        }
    }
}

/// How a HELLO authenticates (AWP1.md §4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelloAuth {
    /// Method 1: an HMAC device token (see [`crate::token`]).
    Token {
        /// Unix seconds after which the token is void; 0 for never.
        expiry: u64,
        /// `HMAC-SHA256(tenant secret, message)`.
        token: [u8; 32],
    },
    /// Method 2: the TLS client certificate (expiry 0, empty token on the wire).
    ClientCert,
}

impl HelloAuth {
    /// The wire `auth_method`.
    pub fn method(&self) -> u8 {
        match self {
            HelloAuth::Token { .. } => 1,
            HelloAuth::ClientCert => 2,
        }
    }
}

/// HELLO (AWP1.md §4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Lowest protocol version the client speaks (≥ 1).
    pub min_version: u8,
    /// Highest protocol version the client speaks (≥ `min_version`).
    pub max_version: u8,
    /// 1–64 bytes of `[A-Za-z0-9_.-]`.
    pub tenant_id: String,
    /// 1–128 bytes of `[A-Za-z0-9_.:@-]`.
    pub device_id: String,
    /// The agent's platform.
    pub platform: Platform,
    /// 0–64 bytes.
    pub agent_version: String,
    /// Codecs the client may send.
    pub compression: CompressionSet,
    /// How the client authenticates.
    pub auth: HelloAuth,
}

/// Whether `id` is a valid tenant id (1–64 bytes of `[A-Za-z0-9_.-]`).
pub fn is_valid_tenant_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether `id` is a valid device id (1–128 bytes of `[A-Za-z0-9_.:@-]`).
pub fn is_valid_device_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'-'))
}

impl Hello {
    fn parse(input: &[u8]) -> Res<'_, Hello> {
        let (input, min_version) = u8_field(input, "min_version")?;
        let (input, max_version) = u8_field(input, "max_version")?;
        let (input, tenant_id) = str_field(input, "tenant_id", 1, 64)?;
        let (input, device_id) = str_field(input, "device_id", 1, 128)?;
        let (input, platform) = u8_field(input, "platform")?;
        let (input, agent_version) = str_field(input, "agent_version", 0, 64)?;
        let (input, compression) = u8_field(input, "compression")?;
        let (input, auth_method) = u8_field(input, "auth_method")?;
        let (input, token_expiry) = u64_field(input, "token_expiry")?;
        let (input, token) = bytes_field(input, "token", 0, 32)?;
        let Some(platform) = Platform::from_u8(platform) else {
            return fail("platform", Problem::UnknownValue(platform.into()));
        };
        let Some(compression) = CompressionSet::from_bits(compression) else {
            return fail("compression", Problem::UnknownValue(compression.into()));
        };
        let auth = match auth_method {
            1 => match <[u8; 32]>::try_from(token) {
                Ok(token) => HelloAuth::Token {
                    expiry: token_expiry,
                    token,
                },
                Err(_) => {
                    return fail(
                        "token",
                        Problem::Length {
                            len: token.len() as u64,
                            min: 32,
                            max: 32,
                        },
                    );
                }
            },
            2 => {
                if token_expiry != 0 {
                    return fail("token_expiry", Problem::Rule("must be 0 for auth_method 2"));
                }
                if !token.is_empty() {
                    return fail("token", Problem::Rule("must be empty for auth_method 2"));
                }
                HelloAuth::ClientCert
            }
            other => return fail("auth_method", Problem::UnknownValue(other.into())),
        };
        let hello = Hello {
            min_version,
            max_version,
            tenant_id: tenant_id.to_owned(),
            device_id: device_id.to_owned(),
            platform,
            agent_version: agent_version.to_owned(),
            compression,
            auth,
        };
        match hello.check() {
            Ok(()) => Ok((input, hello)),
            Err(e) => Err(nom::Err::Error(e)),
        }
    }

    /// The rules of AWP1.md §4.1 that the types do not already enforce.
    pub fn check(&self) -> Result<(), FieldError> {
        check_range("min_version", self.min_version, 1, u8::MAX)?;
        if self.max_version < self.min_version {
            return Err(FieldError::new("max_version", Problem::Rule("below min_version")));
        }
        if !is_valid_tenant_id(&self.tenant_id) {
            check_len("tenant_id", self.tenant_id.len(), 1, 64)?;
            return Err(FieldError::new("tenant_id", Problem::InvalidChar));
        }
        if !is_valid_device_id(&self.device_id) {
            check_len("device_id", self.device_id.len(), 1, 128)?;
            return Err(FieldError::new("device_id", Problem::InvalidChar));
        }
        check_len("agent_version", self.agent_version.len(), 0, 64)
    }

    fn write(&self, b: &mut BytesMut) {
        b.put_u8(self.min_version);
        b.put_u8(self.max_version);
        put_str(b, &self.tenant_id);
        put_str(b, &self.device_id);
        b.put_u8(self.platform as u8);
        put_str(b, &self.agent_version);
        b.put_u8(self.compression.bits());
        b.put_u8(self.auth.method());
        match &self.auth {
            HelloAuth::Token { expiry, token } => {
                b.put_u64(*expiry);
                put_bytes(b, token);
            }
            HelloAuth::ClientCert => {
                b.put_u64(0);
                put_bytes(b, &[]);
            }
        }
    }

    /// The highest version in `min_version..=max_version` that `supported`
    /// (ascending or not) contains, if any.
    pub fn choose_version(&self, supported: &[u8]) -> Option<u8> {
        supported
            .iter()
            .copied()
            .filter(|v| (self.min_version..=self.max_version).contains(v))
            .max()
    }
}

/// WELCOME (AWP1.md §4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// The chosen protocol version.
    pub version: u8,
    /// Unique per connection.
    pub session_id: [u8; 16],
    /// Largest payload the server accepts (≥ 65,536, ≤ u32::MAX).
    pub max_frame_len: u64,
    /// Largest record count in one BATCH (≥ 1).
    pub max_batch_records: u64,
    /// How many BATCHes may be unacknowledged at once (≥ 1).
    pub max_inflight: u64,
    /// The client should PING after this long without sending.
    pub heartbeat_ms: u64,
    /// Codecs the server accepts.
    pub compression: CompressionSet,
}

impl Welcome {
    fn parse(input: &[u8]) -> Res<'_, Welcome> {
        let (input, version) = u8_field(input, "version")?;
        let (input, session_id) = bytes_field(input, "session_id", 16, 16)?;
        let (input, max_frame_len) = varint(input, "max_frame_len")?;
        let (input, max_batch_records) = varint(input, "max_batch_records")?;
        let (input, max_inflight) = varint(input, "max_inflight")?;
        let (input, heartbeat_ms) = varint(input, "heartbeat_ms")?;
        let (input, compression) = u8_field(input, "compression")?;
        let Some(compression) = CompressionSet::from_bits(compression) else {
            return fail("compression", Problem::UnknownValue(compression.into()));
        };
        let welcome = Welcome {
            version,
            session_id: session_id.try_into().unwrap_or_default(),
            max_frame_len,
            max_batch_records,
            max_inflight,
            heartbeat_ms,
            compression,
        };
        match welcome.check() {
            Ok(()) => Ok((input, welcome)),
            Err(e) => Err(nom::Err::Error(e)),
        }
    }

    /// The rules of AWP1.md §4.2.
    pub fn check(&self) -> Result<(), FieldError> {
        check_range("version", self.version, 1, u8::MAX)?;
        check_range("max_frame_len", self.max_frame_len, 65_536, u32::MAX)?;
        check_range("max_batch_records", self.max_batch_records, 1, u64::MAX)?;
        check_range("max_inflight", self.max_inflight, 1, u64::MAX)
    }

    fn write(&self, b: &mut BytesMut) {
        b.put_u8(self.version);
        put_bytes(b, &self.session_id);
        put_varint(b, self.max_frame_len);
        put_varint(b, self.max_batch_records);
        put_varint(b, self.max_inflight);
        put_varint(b, self.heartbeat_ms);
        b.put_u8(self.compression.bits());
    }

    /// The limits a client must respect on this session, as a decoder's
    /// [`Limits`] (`max_batch_bytes` is not part of WELCOME: the spec's
    /// default is kept).
    pub fn limits(&self) -> Limits {
        Limits {
            max_frame_len: u32::try_from(self.max_frame_len).unwrap_or(u32::MAX),
            max_batch_records: u32::try_from(self.max_batch_records).unwrap_or(u32::MAX),
            accepted_compression: self.compression,
            ..Limits::DEFAULT
        }
    }
}

/// ACK status (AWP1.md §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AckStatus {
    /// Every record of the batch is durably stored.
    Ok = 0,
    /// Nothing was taken; send it again after `retry_after_ms`.
    Retry = 1,
    /// The content is invalid; nothing is stored; do not resend.
    Rejected = 2,
}

impl AckStatus {
    /// The lower-case name, for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            AckStatus::Ok => "ok",
            AckStatus::Retry => "retry",
            AckStatus::Rejected => "rejected",
        }
    }
}

/// The longest ACK or ERROR message.
pub const MAX_MESSAGE_LEN: usize = 512;
/// The longest GOAWAY reason.
pub const MAX_REASON_LEN: usize = 256;

/// ACK (AWP1.md §4.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The BATCH this answers.
    pub seq: u64,
    /// The outcome.
    pub status: AckStatus,
    /// 0 unless `status` is RETRY.
    pub retry_after_ms: u64,
    /// 0–512 bytes; empty for OK; for REJECTED it names the bad record and rule.
    pub message: String,
}

impl Ack {
    /// ACK OK.
    pub fn ok(seq: u64) -> Ack {
        Ack {
            seq,
            status: AckStatus::Ok,
            retry_after_ms: 0,
            message: String::new(),
        }
    }

    /// ACK RETRY; the message is shortened to 512 bytes if need be.
    pub fn retry(seq: u64, retry_after_ms: u64, message: &str) -> Ack {
        Ack {
            seq,
            status: AckStatus::Retry,
            retry_after_ms,
            message: wire::truncate_utf8(Cow::Borrowed(message), MAX_MESSAGE_LEN).into_owned(),
        }
    }

    /// ACK REJECTED; the message is shortened to 512 bytes if need be.
    pub fn rejected(seq: u64, message: &str) -> Ack {
        Ack {
            seq,
            status: AckStatus::Rejected,
            retry_after_ms: 0,
            message: wire::truncate_utf8(Cow::Borrowed(message), MAX_MESSAGE_LEN).into_owned(),
        }
    }

    fn parse(input: &[u8]) -> Res<'_, Ack> {
        let (input, seq) = varint(input, "seq")?;
        let (input, status) = u8_field(input, "status")?;
        let (input, retry_after_ms) = varint(input, "retry_after_ms")?;
        let (input, message) = str_field(input, "message", 0, MAX_MESSAGE_LEN as u64)?;
        let status = match status {
            0 => AckStatus::Ok,
            1 => AckStatus::Retry,
            2 => AckStatus::Rejected,
            other => return fail("status", Problem::UnknownValue(other.into())),
        };
        let ack = Ack {
            seq,
            status,
            retry_after_ms,
            message: message.to_owned(),
        };
        match ack.check() {
            Ok(()) => Ok((input, ack)),
            Err(e) => Err(nom::Err::Error(e)),
        }
    }

    /// The rules of AWP1.md §4.4.
    pub fn check(&self) -> Result<(), FieldError> {
        check_range("seq", self.seq, 1, u64::MAX)?;
        if self.status != AckStatus::Retry && self.retry_after_ms != 0 {
            return Err(FieldError::new(
                "retry_after_ms",
                Problem::Rule("must be 0 unless status is RETRY"),
            ));
        }
        if self.status == AckStatus::Ok && !self.message.is_empty() {
            return Err(FieldError::new("message", Problem::Rule("must be empty for OK")));
        }
        check_len("message", self.message.len(), 0, MAX_MESSAGE_LEN as u64)
    }

    fn write(&self, b: &mut BytesMut) {
        put_varint(b, self.seq);
        b.put_u8(self.status as u8);
        put_varint(b, self.retry_after_ms);
        put_str(b, &self.message);
    }
}

/// GOAWAY (AWP1.md §4.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoAway {
    /// How long the client should wait before reconnecting.
    pub reconnect_after_ms: u64,
    /// 0–256 bytes.
    pub reason: String,
}

impl GoAway {
    /// A GOAWAY; the reason is shortened to 256 bytes if need be.
    pub fn new(reconnect_after_ms: u64, reason: &str) -> GoAway {
        GoAway {
            reconnect_after_ms,
            reason: wire::truncate_utf8(Cow::Borrowed(reason), MAX_REASON_LEN).into_owned(),
        }
    }

    fn parse(input: &[u8]) -> Res<'_, GoAway> {
        let (input, reconnect_after_ms) = varint(input, "reconnect_after_ms")?;
        let (input, reason) = str_field(input, "reason", 0, MAX_REASON_LEN as u64)?;
        Ok((
            input,
            GoAway {
                reconnect_after_ms,
                reason: reason.to_owned(),
            },
        ))
    }

    /// The rules of AWP1.md §4.6.
    pub fn check(&self) -> Result<(), FieldError> {
        check_len("reason", self.reason.len(), 0, MAX_REASON_LEN as u64)
    }
}

/// ERROR (AWP1.md §4.7). The code is kept as sent, so that a peer's code
/// this version does not know still decodes and re-encodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorFrame {
    /// The wire code; [`ErrorFrame::error_code`] names it.
    pub code: u16,
    /// 0–512 bytes.
    pub message: String,
}

impl ErrorFrame {
    /// An ERROR; the message is shortened to 512 bytes if need be.
    pub fn new(code: ErrorCode, message: &str) -> ErrorFrame {
        ErrorFrame {
            code: code as u16,
            message: wire::truncate_utf8(Cow::Borrowed(message), MAX_MESSAGE_LEN).into_owned(),
        }
    }

    /// The ERROR a decode failure is answered with.
    pub fn from_frame_error(error: &FrameError) -> ErrorFrame {
        ErrorFrame::new(error.code(), &error.to_string())
    }

    /// The code, if AWP/1 defines it.
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_u16(self.code)
    }

    fn parse(input: &[u8]) -> Res<'_, ErrorFrame> {
        let (input, code) = u16_field(input, "code")?;
        let (input, message) = str_field(input, "message", 0, MAX_MESSAGE_LEN as u64)?;
        Ok((
            input,
            ErrorFrame {
                code,
                message: message.to_owned(),
            },
        ))
    }

    /// The rules of AWP1.md §4.7.
    pub fn check(&self) -> Result<(), FieldError> {
        check_len("message", self.message.len(), 0, MAX_MESSAGE_LEN as u64)
    }
}
