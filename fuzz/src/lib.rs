//! Interpreters behind the fuzz targets: each decodes bytes (with `arbitrary`) into a sequence
//! of operations on one layer of `fairshare` or of its integration crates, runs it, and panics
//! (a fuzz crash) when a contract breaks: an item lost or handed back twice, a limit exceeded,
//! a per-tenant FIFO broken, a request without exactly one outcome, a result that differs from
//! a reference, a panic out of a call the host may make.
//!
//! The same interpreters can be replayed from a plain test by passing the crash input to
//! `run`.

// The operation enums are fuzz inputs whose fields are named for the call arguments they feed;
// documenting each field would repeat its name.
#![allow(missing_docs)]

pub mod common;
pub mod config;
pub mod fair_queue;
pub mod postgres;
pub mod scheduler;
pub mod shared;
pub mod tower;
