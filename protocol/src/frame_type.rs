//! The frame types of AWP1.md §4 and their names (apart from `header.rs` so
//! that errors can name a frame type without the header).

use std::fmt;

/// The frame types of AWP1.md §4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// C→S: first frame after the preamble.
    Hello = 0x01,
    /// S→C: answer to a valid HELLO.
    Welcome = 0x02,
    /// C→S: records to store.
    Batch = 0x03,
    /// S→C: one per BATCH.
    Ack = 0x04,
    /// Both: liveness probe.
    Ping = 0x05,
    /// Both: answer to PING.
    Pong = 0x06,
    /// S→C: the server is draining.
    GoAway = 0x07,
    /// Both: fatal error; the sender closes.
    Error = 0x08,
    /// C→S: the client is done.
    Bye = 0x09,
}

impl FrameType {
    /// The type for a header's type byte.
    pub fn from_u8(value: u8) -> Option<FrameType> {
        Some(match value {
            0x01 => FrameType::Hello,
            0x02 => FrameType::Welcome,
            0x03 => FrameType::Batch,
            0x04 => FrameType::Ack,
            0x05 => FrameType::Ping,
            0x06 => FrameType::Pong,
            0x07 => FrameType::GoAway,
            0x08 => FrameType::Error,
            0x09 => FrameType::Bye,
            _ => return None,
        })
    }

    /// The spec's upper-case name, as in `vectors.json`.
    pub fn name(self) -> &'static str {
        match self {
            FrameType::Hello => "HELLO",
            FrameType::Welcome => "WELCOME",
            FrameType::Batch => "BATCH",
            FrameType::Ack => "ACK",
            FrameType::Ping => "PING",
            FrameType::Pong => "PONG",
            FrameType::GoAway => "GOAWAY",
            FrameType::Error => "ERROR",
            FrameType::Bye => "BYE",
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
