//! Prometheus metrics: the text exposition format, lock-free latency histograms, and a
//! tiny HTTP/1.1 layer to serve `GET /metrics`. Everything here is sans-IO: functions take
//! and return bytes and strings, and the caller (a mio reactor) owns sockets, buffers and
//! timeouts. That is why there is no HTTP framework: the pooler has no async runtime for
//! one to run on, and one fixed endpoint needs only a request-head parser (about a
//! hundred lines, bounded to 8 KiB, refusing bodies) and a response encoder, both of
//! which test without sockets.
//!
//! * [`exposition`]: [`Exposition`] writes families (HELP, TYPE, samples) in text format
//!   0.0.4 with names checked, label values and help escaped, counters named `*_total`,
//!   histograms as cumulative `_bucket` lines ending in `le="+Inf"` plus `_sum` and
//!   `_count`. A family with no samples still gets its HELP and TYPE lines.
//! * [`histogram`]: [`Histogram`] is observed on a worker's hot path with relaxed atomic
//!   adds and no lock. Relaxed is enough because each counter is independently monotonic
//!   and nothing else is published through it: a scrape needs each number to be some
//!   recent value, not a consistent cut across counters, and a stronger ordering would
//!   only add fences to every query. The one cross-counter invariant the format needs,
//!   `_count` equal to the `+Inf` bucket, holds because the count is derived from the
//!   buckets at snapshot time rather than kept separately. Each worker owns its
//!   histograms (no contention between cores); the scrape merges their
//!   [`HistogramSnapshot`]s.
//! * [`http`]: [`parse_request`] (complete / incomplete / bad, pipelining via
//!   `consumed`), [`route`], and [`respond`] / [`response`] / [`bad_request`] to produce
//!   the bytes to write.
//! * [`validate()`]: a strict checker of exposition text, public so integration tests can
//!   check what `/metrics` serves.
//!
//! Serving a connection, roughly:
//!
//! ```
//! use pooler::metrics::{http, Exposition, Histogram, HistogramSnapshot, LATENCY_BOUNDS};
//!
//! let workers = [Histogram::latency(), Histogram::latency()];
//! let mut inbuf: Vec<u8> = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
//! let mut out = Vec::new();
//! loop {
//!     match http::parse_request(&inbuf) {
//!         http::Parse::Incomplete => break, // read more (or time out)
//!         http::Parse::Bad(reason) => {
//!             out.extend(http::bad_request(reason)); // then close once written
//!             break;
//!         }
//!         http::Parse::Request { method, path, keep_alive, consumed } => {
//!             out.extend(http::respond(method, path, keep_alive, || {
//!                 let mut total = HistogramSnapshot::empty(LATENCY_BOUNDS);
//!                 for w in &workers {
//!                     let _ = w.add_to(&mut total);
//!                 }
//!                 let mut e = Exposition::new();
//!                 e.histogram("pooler_query_duration_seconds", "Query latency.", &[], &total);
//!                 e.into_string()
//!             }));
//!             inbuf.drain(..consumed);
//!             if !keep_alive {
//!                 break; // close once written
//!             }
//!         }
//!     }
//! }
//! assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"));
//! ```

pub mod exposition;
pub mod histogram;
pub mod http;
pub mod validate;

pub use exposition::{format_float, Exposition, Family, Kind, Value};
pub use histogram::{Histogram, HistogramSnapshot, MergeError, LATENCY_BOUNDS};
pub use http::{bad_request, parse_request, respond, response, route, Parse, Route};
pub use validate::validate;
