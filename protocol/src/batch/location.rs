//! LOCATION records (kind 1).

use crate::error::FieldError;
use crate::wire::{Res, check_range, i32_field, varint};

/// LOCATION (kind 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Latitude in 1e-7 degrees, −900,000,000 … 900,000,000.
    pub lat_e7: i32,
    /// Longitude in 1e-7 degrees, −1,800,000,000 … 1,800,000,000.
    pub lon_e7: i32,
    /// Accuracy radius in metres, ≤ 1,000,000.
    pub accuracy_m: u64,
}

impl Location {
    pub(super) fn parse(input: &[u8]) -> Res<'_, Location> {
        let (input, lat_e7) = i32_field(input, "lat_e7")?;
        let (input, lon_e7) = i32_field(input, "lon_e7")?;
        let (input, accuracy_m) = varint(input, "accuracy_m")?;
        Ok((
            input,
            Location {
                lat_e7,
                lon_e7,
                accuracy_m,
            },
        ))
    }

    /// The rules of AWP1.md §5 for LOCATION.
    pub fn check(&self) -> Result<(), FieldError> {
        check_range("lat_e7", self.lat_e7, -900_000_000, 900_000_000)?;
        check_range("lon_e7", self.lon_e7, -1_800_000_000, 1_800_000_000)?;
        check_range("accuracy_m", self.accuracy_m, 0, 1_000_000)
    }
}
