//! `ringback emulate`: fakes of the platforms ringback ingests from, with their delivery rules
//! (retries, merging, signing), as a realistic traffic source and an end-to-end check of a
//! deployment. Each emulator writes a [`ledger`] of every delivery attempt and its answer;
//! [`verify`] then checks the target's database (and Kafka) against it and gives a verdict.
//!
//! Where `ringback simulate` sends well-formed pushes as fast as asked, an emulator behaves as
//! the platform: `huawei` never retries a status push and retries a fee push up to 6 times an
//! hour apart (`--time-scale` compresses the hour), merges CDRs, serves the app-facing call API.

pub mod huawei;
pub mod ledger;
pub mod verify;
