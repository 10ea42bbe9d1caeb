//! NET_USAGE records (kind 3).

use std::borrow::Cow;

use crate::error::FieldError;
use crate::wire::{Res, check_len, str_field, varint};

use super::*;

/// NET_USAGE (kind 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetUsage<'a> {
    /// 0–256 bytes.
    pub app: Cow<'a, str>,
    /// The network type.
    pub network: Network,
    /// Bytes sent.
    pub bytes_tx: u64,
    /// Bytes received.
    pub bytes_rx: u64,
}

impl<'a> NetUsage<'a> {
    pub(super) fn parse(input: &'a [u8]) -> Res<'a, NetUsage<'a>> {
        let (input, app) = str_field(input, "app", 0, u64::MAX)?;
        let (input, network) = enum_field(input, "network", Network::from_u8)?;
        let (input, bytes_tx) = varint(input, "bytes_tx")?;
        let (input, bytes_rx) = varint(input, "bytes_rx")?;
        Ok((
            input,
            NetUsage {
                app: Cow::Borrowed(app),
                network,
                bytes_tx,
                bytes_rx,
            },
        ))
    }

    /// The rules of AWP1.md §5 for NET_USAGE.
    pub fn check(&self) -> Result<(), FieldError> {
        check_len("app", self.app.len(), 0, 256)
    }
}
