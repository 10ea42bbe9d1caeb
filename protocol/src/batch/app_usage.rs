//! APP_USAGE records (kind 2).

use std::borrow::Cow;

use crate::error::FieldError;
use crate::wire::{Res, check_len, str_field, varint};

/// APP_USAGE (kind 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppUsage<'a> {
    /// 1–256 bytes.
    pub app: Cow<'a, str>,
    /// 0–512 bytes.
    pub title: Cow<'a, str>,
    /// Time in the foreground.
    pub foreground_ms: u64,
}

impl<'a> AppUsage<'a> {
    pub(super) fn parse(input: &'a [u8]) -> Res<'a, AppUsage<'a>> {
        let (input, app) = str_field(input, "app", 0, u64::MAX)?;
        let (input, title) = str_field(input, "title", 0, u64::MAX)?;
        let (input, foreground_ms) = varint(input, "foreground_ms")?;
        Ok((
            input,
            AppUsage {
                app: Cow::Borrowed(app),
                title: Cow::Borrowed(title),
                foreground_ms,
            },
        ))
    }

    /// The rules of AWP1.md §5 for APP_USAGE.
    pub fn check(&self) -> Result<(), FieldError> {
        check_len("app", self.app.len(), 1, 256)?;
        check_len("title", self.title.len(), 0, 512)
    }
}
