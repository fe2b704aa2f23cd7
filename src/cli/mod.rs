//! Subcommands of the binary too long for `main.rs`.

pub mod dead_letters;
