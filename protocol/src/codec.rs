//! A tokio-util [`Decoder`]/[`Encoder`] over the pure functions of this crate,
//! for a client's `FramedRead`/`FramedWrite`: agent-sim reads the gateway's
//! frames with it. The gateway does not use it: its session decodes frames
//! itself from the connection's read buffer, with the same functions
//! ([`crate::decode`], [`crate::check_preamble`]), because it must decide
//! per frame, from the header alone, how much of the buffer to reserve and
//! whether a BATCH waits for memory budget before its payload is read.
//!
//! The decoder follows tokio-util's `length_delimited`: the header is checked
//! against the limits before a single payload byte is reserved, and the
//! buffer grows only to the length of a frame that passed that check.

use std::io;

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::{EncodeError, FrameError};
use crate::frame::{Decoded, Frame, check};
use crate::header::{HEADER_LEN, check_preamble};
use crate::limits::Limits;

/// What can go wrong reading or writing frames on a stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The stream failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The peer sent bytes that are not valid AWP/1; answer with `ERROR(e.code())`.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame to send breaks a rule (a bug in the caller).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Decodes AWP/1 frames from a byte stream and encodes frames into one.
#[derive(Clone, Debug)]
pub struct AwpCodec {
    limits: Limits,
    expect_preamble: bool,
}

impl AwpCodec {
    /// A codec for the client side: the server sends no preamble.
    pub fn client(limits: Limits) -> AwpCodec {
        AwpCodec {
            limits,
            expect_preamble: false,
        }
    }

    /// A codec for the server side: the stream starts with the preamble.
    pub fn server(limits: Limits) -> AwpCodec {
        AwpCodec {
            limits,
            expect_preamble: true,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Changes the limits, e.g. to the codecs accepted in WELCOME.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }
}

impl Decoder for AwpCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if self.expect_preamble {
            match check_preamble(src)? {
                None => return Ok(None),
                Some(len) => {
                    src.advance(len);
                    self.expect_preamble = false;
                }
            }
        }
        match check(src, &self.limits)? {
            Decoded::Incomplete(needed) => {
                // Bounded: `check` refused any frame over the limit.
                src.reserve(needed);
                Ok(None)
            }
            Decoded::Complete(header, len) => {
                let mut frame = src.split_to(len);
                frame.advance(HEADER_LEN);
                Ok(Some(Frame::parse(&header, frame.freeze(), &self.limits)?))
            }
        }
    }
}

impl Encoder<&Frame> for AwpCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(frame.encode(dst)?)
    }
}

impl Encoder<Frame> for AwpCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(frame.encode(dst)?)
    }
}
