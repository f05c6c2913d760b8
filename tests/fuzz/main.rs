//! A deterministic, in-process mutation fuzzer for the pooler's parsers, on stable Rust
//! and without crates: no coverage instrumentation, so an input joins the corpus when it
//! shows an outcome feature (a fact the target reports about what it did: which error,
//! which message sequence, which state) that no earlier input showed.
//!
//! * `cargo test --test fuzz`: the smoke run (part of `make test`). Every target replays
//!   `tests/fuzz/regressions/<target>/*`, runs its seeds, then a fixed number of
//!   mutations from a fixed seed, so a run is reproducible.
//! * `FUZZ_SECONDS=N cargo test --release --test fuzz -- --nocapture --test-threads=1`:
//!   each target for N seconds. `FUZZ_TARGET=name` runs one target, `FUZZ_SEED=n`
//!   changes the random sequence, `FUZZ_ITERS=n` sets the smoke count,
//!   `FUZZ_REPLAY=file` runs one input against `FUZZ_TARGET` (or every target),
//!   `FUZZ_NO_SKIP=1` makes known issues fail the run too (see `KNOWN_PROPERTIES`),
//!   `FUZZ_WRITE_SEEDS=1` writes the built-in seeds to `tests/fuzz/corpus/<target>/`,
//!   `FUZZ_SAVE_CORPUS=1` writes the final corpus to `target/fuzz-corpus/<target>/`.
//!
//! Findings go to `target/fuzz-crashes/`: `<target>-<n>.bin` for a panic,
//! `<target>-prop-<n>.bin` for a broken invariant, `<target>-alloc-<n>.bin` for a single
//! allocation over 64 MiB, `<target>-hang.bin` for an input running over the time limit
//! (the process then aborts). The test fails at the end when any were found.

mod targets;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use pooler::worker::fuzz::{Features, FEATURE_WORDS};
use targets::Outcome;

/// Inputs are cut to this size.
const MAX_INPUT: usize = 64 * 1024;
/// A single allocation larger than this is a finding.
const ALLOC_LIMIT: usize = 64 << 20;
/// Corpus entries kept per target.
const MAX_CORPUS: usize = 4096;
/// Findings saved per distinct location (all are counted).
const SAVE_PER_LOCATION: usize = 2;

// ---- allocation tracking ----

/// The system allocator, recording the largest single request per thread.
struct Tracking;

thread_local! {
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note_size(size: usize) {
    let _ = PEAK.try_with(|p| {
        if size > p.get() {
            p.set(size);
        }
    });
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_size(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_size(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_size(new_size);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

// ---- panics ----

thread_local! {
    /// Set while this thread runs fuzz inputs: panics are recorded, not printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
                    (*s).to_string()
                } else if let Some(s) = info.payload().downcast_ref::<String>() {
                    s.clone()
                } else {
                    "(non-string panic payload)".to_string()
                };
                let location = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                    .unwrap_or_else(|| "?".into());
                LAST_PANIC.with(|p| *p.borrow_mut() = Some((message, location)));
            } else {
                default(info);
            }
        }));
    });
}

// ---- random numbers ----

/// SplitMix64: tiny, fast, and good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    /// Small values much more often than large ones.
    fn small(&mut self, max: usize) -> usize {
        let bits = self.below(usize::BITS as usize - max.leading_zeros() as usize + 1);
        (self.next() as usize & ((1usize << bits) - 1)).min(max)
    }
}

// ---- mutation ----

const INTERESTING_BYTES: &[u8] = &[
    0, 1, 0xff, 0xfe, 0x7f, 0x80, b'\'', b'$', b'"', b'/', b'*', b'-', b'\n', b';', b'\\', b'=',
    b',', b'#', b'[', b']', b' ', b'S', b'Z', b'E', b'Q', b'P', b'B', b'D', b'C', b'X', b'd', b'c',
    b'T', b'1',
];

const INTERESTING_I32: &[i32] = &[
    0,
    -1,
    1,
    3,
    4,
    5,
    6,
    8,
    16,
    255,
    256,
    9_999,
    10_000,
    10_001,
    65_535,
    65_536,
    i32::MAX,
    i32::MIN,
    0x4000_0000,
    0x3fff_fffe,
    0x3fff_ffff,
    1 << 20,
    80_877_102,
    80_877_103,
    80_877_104,
    196_608,
    196_610,
];

const INTERESTING_I16: &[i16] = &[0, -1, 1, 2, 3, i16::MAX, i16::MIN, 0x7f, 0x100];

struct Mutator<'a> {
    text: bool,
    dict: &'a [Vec<u8>],
}

impl Mutator<'_> {
    fn mutate(&self, rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
        let rounds = 1 + rng.small(7);
        for _ in 0..rounds {
            self.mutate_once(rng, input, corpus);
        }
        input.truncate(MAX_INPUT);
    }

    fn mutate_once(&self, rng: &mut Rng, v: &mut Vec<u8>, corpus: &[Vec<u8>]) {
        let ops = if self.text { 16 } else { 14 };
        match rng.below(ops) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
            }
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                let delta = 1 + rng.below(8) as u8;
                v[i] = if rng.chance(2) {
                    v[i].wrapping_add(delta)
                } else {
                    v[i].wrapping_sub(delta)
                };
            }
            3 => {
                // A big-endian 32-bit value: lengths and codes of the protocol.
                let x = INTERESTING_I32[rng.below(INTERESTING_I32.len())].to_be_bytes();
                self.put(rng, v, &x);
            }
            4 => {
                let x = INTERESTING_I16[rng.below(INTERESTING_I16.len())].to_be_bytes();
                self.put(rng, v, &x);
            }
            5 if v.len() >= 4 => {
                // A length field that fits (or nearly fits) what follows it.
                let at = rng.below(v.len() - 3);
                let rest = (v.len() - at) as i64;
                let len = match rng.below(4) {
                    0 => rest,
                    1 => rest - 1,
                    2 => rest + 1 + rng.small(16) as i64,
                    _ => rest - rng.small(rest as usize) as i64,
                };
                v[at..at + 4].copy_from_slice(&(len as i32).to_be_bytes());
            }
            6 => {
                let at = rng.below(v.len() + 1);
                let n = 1 + rng.small(15);
                let bytes: Vec<u8> = (0..n)
                    .map(|_| {
                        if rng.chance(2) {
                            INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())]
                        } else {
                            rng.next() as u8
                        }
                    })
                    .collect();
                v.splice(at..at, bytes);
            }
            7 if !v.is_empty() => {
                let at = rng.below(v.len());
                let n = 1 + rng.small(v.len() - at - 1);
                v.drain(at..at + n);
            }
            8 if !v.is_empty() => {
                // Duplicate a range somewhere (repeated messages, nesting).
                let at = rng.below(v.len());
                let n = 1 + rng.small(v.len() - at - 1);
                let piece = v[at..at + n].to_vec();
                let most = if rng.chance(8) { 64 } else { 3 };
                let times = 1 + rng.small(most);
                let to = rng.below(v.len() + 1);
                for _ in 0..times {
                    if v.len() + piece.len() > MAX_INPUT {
                        break;
                    }
                    v.splice(to..to, piece.iter().copied());
                }
            }
            9 if !corpus.is_empty() => {
                // Splice: a prefix of this input and a part of another.
                let other = &corpus[rng.below(corpus.len())];
                if other.is_empty() {
                    return;
                }
                let from = rng.below(other.len());
                let n = 1 + rng.small(other.len() - from - 1);
                let piece = &other[from..from + n];
                if rng.chance(2) {
                    let at = rng.below(v.len() + 1);
                    v.truncate(at);
                    v.extend_from_slice(piece);
                } else {
                    let at = rng.below(v.len() + 1);
                    v.splice(at..at, piece.iter().copied());
                }
            }
            10 | 11 if !self.dict.is_empty() => {
                let word = &self.dict[rng.below(self.dict.len())];
                let at = self.boundary(rng, v);
                if rng.chance(3) && at + word.len() <= v.len() {
                    v[at..at + word.len()].copy_from_slice(word);
                } else {
                    v.splice(at..at, word.iter().copied());
                }
            }
            12 if !v.is_empty() => {
                let at = rng.below(v.len());
                v.truncate(at);
            }
            13 if v.len() >= 2 => {
                // Swap two bytes, or two ranges' first bytes.
                let a = rng.below(v.len());
                let b = rng.below(v.len());
                v.swap(a, b);
            }
            14 => self.line_op(rng, v),
            15 if !v.is_empty() => {
                // Replace one token-ish run (a word or a number) with a dictionary word.
                let at = rng.below(v.len());
                let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
                let mut start = at;
                while start > 0 && is_word(v[start - 1]) {
                    start -= 1;
                }
                let mut end = at;
                while end < v.len() && is_word(v[end]) {
                    end += 1;
                }
                if !self.dict.is_empty() {
                    let word = &self.dict[rng.below(self.dict.len())];
                    v.splice(start..end, word.iter().copied());
                }
            }
            _ => {
                let at = rng.below(v.len() + 1);
                v.insert(at, rng.next() as u8);
            }
        }
    }

    /// Writes `x` at a random offset, overwriting or inserting.
    fn put(&self, rng: &mut Rng, v: &mut Vec<u8>, x: &[u8]) {
        let at = rng.below(v.len() + 1);
        if rng.chance(2) && at + x.len() <= v.len() {
            v[at..at + x.len()].copy_from_slice(x);
        } else {
            v.splice(at..at, x.iter().copied());
        }
    }

    /// For text, an offset next to a separator more often than not.
    fn boundary(&self, rng: &mut Rng, v: &[u8]) -> usize {
        let at = rng.below(v.len() + 1);
        if !self.text || rng.chance(3) {
            return at;
        }
        let mut i = at;
        while i < v.len() && v[i].is_ascii_alphanumeric() {
            i += 1;
        }
        i
    }

    /// Line-level edits for text: delete, duplicate, swap or move lines.
    fn line_op(&self, rng: &mut Rng, v: &mut Vec<u8>) {
        let mut lines: Vec<Vec<u8>> = v.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        if lines.is_empty() {
            return;
        }
        let a = rng.below(lines.len());
        let b = rng.below(lines.len());
        match rng.below(4) {
            0 => {
                lines.remove(a);
            }
            1 => {
                let l = lines[a].clone();
                lines.insert(b, l);
            }
            2 => lines.swap(a, b),
            _ => {
                // Keep the key, change the value: `key = <dictionary word>`.
                if let Some(eq) = lines[a].iter().position(|&c| c == b'=') {
                    if !self.dict.is_empty() {
                        let word = &self.dict[rng.below(self.dict.len())];
                        lines[a].truncate(eq + 1);
                        lines[a].push(b' ');
                        lines[a].extend_from_slice(word);
                    }
                }
            }
        }
        *v = lines.join(&b'\n');
    }
}

/// Words of the seeds, for text targets: keys, section names, keywords.
fn harvest(seeds: &[Vec<u8>], dict: &mut Vec<Vec<u8>>) {
    let mut seen: HashSet<Vec<u8>> = dict.iter().cloned().collect();
    for s in seeds {
        for w in s.split(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))) {
            if w.len() >= 2 && w.len() <= 40 && seen.len() < 600 && seen.insert(w.to_vec()) {
                dict.push(w.to_vec());
            }
        }
    }
}

// ---- targets ----

struct Target {
    name: &'static str,
    run: fn(&[u8]) -> Outcome,
    seeds: fn() -> Vec<Vec<u8>>,
    text: bool,
    dict: Vec<Vec<u8>>,
    /// Mutations in the smoke run (debug build).
    smoke: usize,
}

fn dict_of(words: &[&str]) -> Vec<Vec<u8>> {
    words.iter().map(|w| w.as_bytes().to_vec()).collect()
}

fn target(name: &str) -> Target {
    let binary = || targets::PROTOCOL_DICT.iter().map(|w| w.to_vec()).collect();
    type Spec = (
        fn(&[u8]) -> Outcome,
        fn() -> Vec<Vec<u8>>,
        bool,
        Vec<Vec<u8>>,
        usize,
    );
    let (run, seeds, text, dict, smoke): Spec = match name {
        "startup" => (
            targets::startup,
            targets::startup_seeds,
            false,
            binary(),
            40_000,
        ),
        "frontend" => (
            targets::frontend,
            targets::frontend_seeds,
            false,
            binary(),
            6_000,
        ),
        "backend" => (
            targets::backend,
            targets::backend_seeds,
            false,
            binary(),
            2_000,
        ),
        "session" => (
            targets::session,
            targets::session_seeds,
            false,
            binary(),
            6_000,
        ),
        "scram" => (
            targets::scram,
            targets::scram_seeds,
            true,
            dict_of(targets::SCRAM_DICT),
            50_000,
        ),
        "config" => (
            targets::config,
            targets::config_seeds,
            true,
            dict_of(targets::CONFIG_DICT),
            2_000,
        ),
        "hba" => (
            targets::hba,
            targets::hba_seeds,
            true,
            dict_of(targets::HBA_DICT),
            30_000,
        ),
        "admin" => (
            targets::admin,
            targets::admin_seeds,
            true,
            dict_of(targets::SQL_DICT),
            40_000,
        ),
        "statements" => (
            targets::statements,
            targets::statement_seeds,
            true,
            dict_of(targets::SQL_DICT),
            12_000,
        ),
        other => panic!("no target {other}"),
    };
    Target {
        name: leak(name),
        run,
        seeds,
        text,
        dict,
        smoke,
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

// ---- running inputs ----

/// Counts a finding; the first few of each location are minimized and kept.
fn record(
    runner: &mut Runner,
    f: Finding,
    findings: &mut Vec<Finding>,
    by_location: &mut HashMap<(Kind, String), usize>,
) {
    let count = by_location.entry((f.kind, f.location.clone())).or_insert(0);
    *count += 1;
    if *count <= SAVE_PER_LOCATION {
        let small = runner.minimize(&f);
        findings.push(Finding { input: small, ..f });
    }
}

/// The part of an invariant message that names the invariant, not the input.
fn property_location(message: &str) -> String {
    let head = message.split(':').next().unwrap_or(message);
    let mut out = String::new();
    for c in head.chars().take(80) {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Crash,
    Property,
    Alloc,
}

struct Finding {
    kind: Kind,
    location: String,
    message: String,
    input: Vec<u8>,
}

enum Run {
    Ok(Box<Features>),
    Bad(Finding),
    /// A broken invariant already reported (see [`KNOWN_PROPERTIES`]).
    Known(Finding),
}

/// Invariant messages of issues already reported: counted and one input saved, but they
/// do not fail the run (unless `FUZZ_NO_SKIP=1`).
const KNOWN_PROPERTIES: &[&str] = &[];

/// What the watchdog watches: the input running now and since when.
#[derive(Default)]
struct Current {
    input: Vec<u8>,
    since: Option<Instant>,
}

struct Runner {
    target: Target,
    current: Arc<Mutex<Current>>,
    /// Whether [`KNOWN_PROPERTIES`] are let pass.
    skip_known: bool,
    execs: usize,
}

impl Runner {
    fn run(&mut self, raw: &[u8]) -> Run {
        let input = &raw[..raw.len().min(MAX_INPUT)];
        {
            let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
            cur.input.clear();
            cur.input.extend_from_slice(input);
            cur.since = Some(Instant::now());
        }
        PEAK.with(|p| p.set(0));
        QUIET.with(|q| q.set(true));
        let run = self.target.run;
        let result = panic::catch_unwind(AssertUnwindSafe(|| run(input)));
        QUIET.with(|q| q.set(false));
        let peak = PEAK.with(Cell::get);
        self.current.lock().unwrap_or_else(|e| e.into_inner()).since = None;
        self.execs += 1;
        match result {
            Err(_) => {
                let (message, location) = LAST_PANIC
                    .with(|p| p.borrow_mut().take())
                    .unwrap_or_else(|| ("?".into(), "?".into()));
                Run::Bad(Finding {
                    kind: Kind::Crash,
                    location,
                    message,
                    input: input.to_vec(),
                })
            }
            Ok(Err(message)) => {
                let known =
                    self.skip_known && KNOWN_PROPERTIES.iter().any(|k| message.starts_with(k));
                let f = Finding {
                    kind: Kind::Property,
                    location: property_location(&message),
                    message,
                    input: input.to_vec(),
                };
                if known {
                    Run::Known(f)
                } else {
                    Run::Bad(f)
                }
            }
            Ok(Ok(_)) if peak > ALLOC_LIMIT => Run::Bad(Finding {
                kind: Kind::Alloc,
                location: format!("{} MiB", peak >> 20),
                message: format!("a single allocation of {peak} bytes"),
                input: input.to_vec(),
            }),
            Ok(Ok(features)) => Run::Ok(Box::new(features)),
        }
    }

    /// Shrinks a finding's input while it still fails the same way (bounded effort).
    fn minimize(&mut self, finding: &Finding) -> Vec<u8> {
        let same = |r: &Run| matches!(r, Run::Bad(f) | Run::Known(f) if f.kind == finding.kind && f.location == finding.location);
        let mut best = finding.input.clone();
        let mut budget = 3000;
        let mut chunk = best.len() / 2;
        while chunk >= 1 && budget > 0 {
            let mut at = 0;
            while at < best.len() && budget > 0 {
                let mut candidate = best.clone();
                let end = (at + chunk).min(candidate.len());
                candidate.drain(at..end);
                budget -= 1;
                let r = self.run(&candidate);
                if same(&r) {
                    best = candidate;
                } else {
                    at += chunk;
                }
            }
            chunk /= 2;
        }
        best
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    for b in bytes.iter().take(2048) {
        let _ = write!(s, "{b:02x}");
    }
    if bytes.len() > 2048 {
        let _ = write!(s, "... ({} bytes)", bytes.len());
    }
    s
}

fn crash_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("fuzz-crashes")
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz")
}

fn read_dir_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect()
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn hang_limit() -> Duration {
    // A debug build is some ten times slower; a hang is a hang either way.
    if cfg!(debug_assertions) {
        Duration::from_secs(15)
    } else {
        Duration::from_secs(5)
    }
}

fn spawn_watchdog(name: &'static str, current: Arc<Mutex<Current>>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let limit = hang_limit();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let cur = current.lock().unwrap_or_else(|e| e.into_inner());
            if cur.since.is_some_and(|t| t.elapsed() > limit) {
                let dir = crash_dir();
                let _ = std::fs::create_dir_all(&dir);
                let path = dir.join(format!("{name}-hang.bin"));
                let _ = std::fs::write(&path, &cur.input);
                eprintln!(
                    "\nfuzz {name}: HANG: one input ran over {limit:?}; saved to {}\ninput ({} bytes): {}",
                    path.display(),
                    cur.input.len(),
                    hex(&cur.input)
                );
                std::process::abort();
            }
        }
    });
}

/// Runs one target: regressions, seeds, then mutations for the smoke count or for
/// `FUZZ_SECONDS`. Panics at the end if anything was found.
fn fuzz(name: &str) {
    if let Ok(only) = std::env::var("FUZZ_TARGET") {
        if !only.split(',').any(|t| t.trim() == name) {
            return;
        }
    }
    install_panic_hook();
    let target = target(name);
    let mut seeds = (target.seeds)();
    if env_flag("FUZZ_WRITE_SEEDS") {
        let dir = fuzz_dir().join("corpus").join(name);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (i, s) in seeds.iter().enumerate() {
            let ext = if target.text { "txt" } else { "bin" };
            std::fs::write(dir.join(format!("seed-{i:02}.{ext}")), s).expect("write seed");
        }
    }
    let files = read_dir_files(&fuzz_dir().join("corpus").join(name));
    if !files.is_empty() {
        seeds = files.into_iter().map(|(_, b)| b).collect();
    }
    seeds.extend(targets::live_seeds(name));
    let mut dict = target.dict.clone();
    if target.text {
        harvest(&seeds, &mut dict);
    }
    let current = Arc::new(Mutex::new(Current::default()));
    let stop = Arc::new(AtomicBool::new(false));
    spawn_watchdog(target.name, current.clone(), stop.clone());
    let smoke = target.smoke;
    let text = target.text;
    let mut runner = Runner {
        target,
        current,
        skip_known: !env_flag("FUZZ_NO_SKIP"),
        execs: 0,
    };
    let started = Instant::now();
    let mut findings: Vec<Finding> = Vec::new();
    let mut by_location: HashMap<(Kind, String), usize> = HashMap::new();
    // Known issues: count and the smallest input, per location.
    let mut known: HashMap<String, (usize, Vec<u8>)> = HashMap::new();
    let mut note_known = |f: Finding| {
        let e = known.entry(f.location).or_insert((0, f.input.clone()));
        e.0 += 1;
        if f.input.len() < e.1.len() {
            e.1 = f.input;
        }
    };

    // FUZZ_REPLAY: one file, nothing else.
    if let Some(path) = std::env::var_os("FUZZ_REPLAY") {
        let input = std::fs::read(&path).expect("FUZZ_REPLAY file");
        match runner.run(&input) {
            Run::Ok(f) => println!(
                "fuzz {name}: replay ok ({} features)",
                f.bits().iter().map(|w| w.count_ones()).sum::<u32>()
            ),
            Run::Known(f) => println!("fuzz {name}: replay hits a known issue: {}", f.message),
            Run::Bad(f) => {
                println!(
                    "fuzz {name}: replay {:?} at {}: {}",
                    f.kind, f.location, f.message
                );
                stop.store(true, Ordering::Relaxed);
                panic!("fuzz {name}: replay failed");
            }
        }
        stop.store(true, Ordering::Relaxed);
        return;
    }

    let regressions = read_dir_files(&fuzz_dir().join("regressions").join(name));
    for (path, input) in &regressions {
        match runner.run(input) {
            Run::Ok(_) => {}
            Run::Known(f) => println!(
                "fuzz {name}: regression {} still hits a known issue: {}",
                path.display(),
                f.message
            ),
            Run::Bad(f) => {
                println!(
                    "fuzz {name}: regression {} fails: {:?} at {}: {}",
                    path.display(),
                    f.kind,
                    f.location,
                    f.message
                );
                findings.push(f);
            }
        }
    }

    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut seen = [0u64; FEATURE_WORDS];
    // Adds the features; whether any was new.
    let novel = |seen: &mut [u64; FEATURE_WORDS], f: &Features| {
        let mut new = false;
        for (s, b) in seen.iter_mut().zip(f.bits()) {
            new |= b & !*s != 0;
            *s |= b;
        }
        new
    };
    for s in seeds.iter().chain(regressions.iter().map(|(_, b)| b)) {
        match runner.run(s) {
            Run::Ok(f) => {
                novel(&mut seen, &f);
            }
            Run::Known(f) => note_known(f),
            Run::Bad(f) => record(&mut runner, f, &mut findings, &mut by_location),
        }
        corpus.push(s.clone());
    }
    let fixed = corpus.len();

    let seed = targets::name_seed(name) ^ env_usize("FUZZ_SEED").unwrap_or(0) as u64;
    let mut rng = Rng(seed);
    let seconds = env_usize("FUZZ_SECONDS");
    let iterations = env_usize("FUZZ_ITERS").unwrap_or(smoke);
    let deadline = seconds.map(|s| started + Duration::from_secs(s as u64));
    let mutator = Mutator { text, dict: &dict };
    let mut i = 0usize;
    let mut last_report = Instant::now();
    loop {
        match deadline {
            Some(d) => {
                if i % 16 == 0 && Instant::now() >= d {
                    break;
                }
            }
            None => {
                if i >= iterations {
                    break;
                }
            }
        }
        i += 1;
        let parent = if corpus.is_empty() {
            Vec::new()
        } else if rng.chance(4) {
            corpus[rng.below(fixed.max(1))].clone()
        } else {
            corpus[rng.below(corpus.len())].clone()
        };
        let mut child = parent;
        mutator.mutate(&mut rng, &mut child, &corpus);
        match runner.run(&child) {
            Run::Ok(f) => {
                if novel(&mut seen, &f) {
                    if corpus.len() < MAX_CORPUS {
                        corpus.push(child);
                    } else {
                        let slot = fixed + rng.below(corpus.len() - fixed);
                        corpus[slot] = child;
                    }
                }
            }
            Run::Bad(f) => {
                let new = !by_location.contains_key(&(f.kind, f.location.clone()));
                if new {
                    println!(
                        "fuzz {name}: new {:?} at {}: {}",
                        f.kind, f.location, f.message
                    );
                }
                record(&mut runner, f, &mut findings, &mut by_location);
            }
            Run::Known(f) => note_known(f),
        }
        if seconds.is_some() && last_report.elapsed() > Duration::from_secs(15) {
            last_report = Instant::now();
            println!(
                "fuzz {name}: ... {} execs, corpus {}, features {}",
                runner.execs,
                corpus.len(),
                seen.iter().map(|w| w.count_ones()).sum::<u32>()
            );
        }
    }
    stop.store(true, Ordering::Relaxed);

    if env_flag("FUZZ_SAVE_CORPUS") {
        let dir = crash_dir().with_file_name("fuzz-corpus").join(name);
        let _ = std::fs::create_dir_all(&dir);
        for (i, c) in corpus.iter().enumerate() {
            let _ = std::fs::write(dir.join(format!("{i:05}.bin")), c);
        }
    }

    let elapsed = started.elapsed();
    let count = |k: Kind| {
        by_location
            .iter()
            .filter(|((kind, _), _)| *kind == k)
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    println!(
        "fuzz {name}: {} execs in {:.1}s ({:.0}/s), corpus {}, features {}, crashes {}, property violations {}, big allocations {}",
        runner.execs,
        elapsed.as_secs_f64(),
        runner.execs as f64 / elapsed.as_secs_f64().max(1e-9),
        corpus.len(),
        seen.iter().map(|w| w.count_ones()).sum::<u32>(),
        count(Kind::Crash),
        count(Kind::Property),
        count(Kind::Alloc),
    );
    let dir = crash_dir();
    let _ = std::fs::create_dir_all(&dir);
    let mut known: Vec<_> = known.into_iter().collect();
    known.sort();
    for (n, (location, (times, input))) in known.into_iter().enumerate() {
        let example = Finding {
            kind: Kind::Property,
            location: location.clone(),
            message: String::new(),
            input,
        };
        let input = runner.minimize(&example);
        let path = dir.join(format!("{name}-known-{n}.bin"));
        let _ = std::fs::write(&path, &input);
        println!(
            "fuzz {name}: known issue ({times}x, not failing the run): {location}\n  example: {}\n  input ({} bytes): {}",
            path.display(),
            input.len(),
            hex(&input)
        );
    }
    if findings.is_empty() {
        return;
    }
    for (n, f) in findings.iter().enumerate() {
        let file = match f.kind {
            Kind::Crash => format!("{name}-{n}.bin"),
            Kind::Property => format!("{name}-prop-{n}.bin"),
            Kind::Alloc => format!("{name}-alloc-{n}.bin"),
        };
        let path = dir.join(file);
        let _ = std::fs::write(&path, &f.input);
        let times = by_location
            .get(&(f.kind, f.location.clone()))
            .copied()
            .unwrap_or(1);
        println!(
            "fuzz {name}: {:?} ({times}x) at {}\n  message: {}\n  saved: {}\n  input ({} bytes): {}",
            f.kind,
            f.location,
            f.message,
            path.display(),
            f.input.len(),
            hex(&f.input)
        );
    }
    panic!(
        "fuzz {name}: {} finding(s); inputs in {}",
        findings.len(),
        dir.display()
    );
}

#[test]
fn startup() {
    fuzz("startup");
}

#[test]
fn frontend() {
    fuzz("frontend");
}

#[test]
fn backend() {
    fuzz("backend");
}

#[test]
fn session() {
    fuzz("session");
}

#[test]
fn scram() {
    fuzz("scram");
}

#[test]
fn config() {
    fuzz("config");
}

#[test]
fn hba() {
    fuzz("hba");
}

#[test]
fn admin() {
    fuzz("admin");
}

#[test]
fn statements() {
    fuzz("statements");
}
