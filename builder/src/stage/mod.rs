//! Stage 4: assembling the root filesystem without root.

pub mod elf;
pub mod files;
pub mod firmware;
pub mod kmod_index;
pub mod modules;
pub mod tree;

pub use tree::{Meta, Special, Tree};
