//! Soak tests (issue 9): slow reliability tests of the real `pooler` binary
//! against a throwaway PostgreSQL 15 that they restart, stop and start, with
//! thousands of clients, connection storms and chaos.
//!
//! Run them alone, one at a time, against the release build:
//!
//! ```text
//! cargo test --release --test soak -- --test-threads=1 --nocapture
//! ```
//!
//! The tests take a process-wide lock, so they never overlap even without
//! `--test-threads=1`, and each one leaves PostgreSQL running when it ends,
//! pass or fail. `--nocapture` shows the figures they measure (lines
//! starting with `[soak]`).

#[path = "../integration/harness.rs"]
mod harness;

mod util;
mod wire;

mod chaos;
mod faults;
mod load;
