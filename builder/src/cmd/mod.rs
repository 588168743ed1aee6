//! One module per subcommand: its clap `Args` and what it does.

pub mod boot;
pub mod diff;
pub mod inspect;
