//! The binary's subcommands, one file each; `main.rs` parses the arguments and hands over.

pub mod calls;
pub mod check_config;
pub mod dead_letters;
pub mod emulate;
pub mod events;
pub mod maintain;
pub mod replay;
pub mod serve;
pub mod simulate;
pub mod topics;
