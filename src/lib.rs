//! pooler: a PostgreSQL connection pooler built on mio reactors, one per worker thread,
//! with no async runtime. `main.rs` only parses arguments; everything else lives here so
//! tests can reach it.

pub mod admin;
pub mod auth;
pub mod config;
pub mod control;
pub mod daemon;
pub mod guard;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod params;
pub mod pool;
pub mod protocol;
pub mod snapshot;
pub mod worker;

/// Applies `log_level` from the config, unless RUST_LOG was given (it wins, for
/// debugging a running setup without editing its config).
pub fn set_log_level(level: &str) {
    if std::env::var_os("RUST_LOG").is_some() {
        return;
    }
    let filter = match level {
        "error" => log::LevelFilter::Error,
        "warn" => log::LevelFilter::Warn,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        _ => log::LevelFilter::Info,
    };
    log::set_max_level(filter);
}
