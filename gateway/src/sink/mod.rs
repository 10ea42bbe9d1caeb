pub mod null;
pub mod sqlite;
