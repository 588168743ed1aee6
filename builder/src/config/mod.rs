//! Configuration: profiles and elements as typed, validated data, and the
//! diagnostics that point at the file, line and field of a mistake.

pub mod diag;
pub mod element;
pub mod profile;
