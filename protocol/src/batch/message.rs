//! MESSAGE records (kind 4).

use std::borrow::Cow;

use crate::error::FieldError;
use crate::wire::{Res, check_len, str_field, varint};

use super::*;

/// MESSAGE (kind 4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// In or out.
    pub direction: Direction,
    /// The channel.
    pub channel: Channel,
    /// 0–256 bytes.
    pub peer: Cow<'a, str>,
    /// Bytes; seconds for calls.
    pub size: u64,
}

impl<'a> Message<'a> {
    pub(super) fn parse(input: &'a [u8]) -> Res<'a, Message<'a>> {
        let (input, direction) = enum_field(input, "direction", Direction::from_u8)?;
        let (input, channel) = enum_field(input, "channel", Channel::from_u8)?;
        let (input, peer) = str_field(input, "peer", 0, u64::MAX)?;
        let (input, size) = varint(input, "size")?;
        Ok((
            input,
            Message {
                direction,
                channel,
                peer: Cow::Borrowed(peer),
                size,
            },
        ))
    }

    /// The rules of AWP1.md §5 for MESSAGE.
    pub fn check(&self) -> Result<(), FieldError> {
        check_len("peer", self.peer.len(), 0, 256)
    }
}
