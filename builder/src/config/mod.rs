//! Configuration: profiles and elements as typed, validated data, the
//! diagnostics that point at the file, line and field of a mistake, and the
//! options of one build.

pub mod diag;
pub mod element;
pub mod options;
pub mod profile;
pub mod validate;
