//! The `pooler` binary: arguments, logging, exit codes. The daemon itself is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
pooler - PostgreSQL connection pooler

Usage:
  pooler -c FILE            run in the foreground with config FILE
  pooler --check -c FILE    validate FILE and exit (0 valid, 1 invalid)
  pooler --version          print the version
  pooler --help             print this help

Signals: SIGHUP reloads the config, SIGINT drains (clients finish their
transactions) and exits, SIGTERM closes everything and exits.
Logging goes to stderr; the config's log_level sets the level, RUST_LOG overrides it.
";

enum Mode {
    Run(PathBuf),
    Check(PathBuf),
}

fn parse_args() -> Result<Option<Mode>, String> {
    let mut config = None;
    let mut check = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "-V" | "--version" => {
                println!("pooler {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "--check" => check = true,
            "-c" | "--config" => {
                config = Some(PathBuf::from(args.next().ok_or("-c needs a file name")?));
            }
            other if other.starts_with("--config=") => {
                config = Some(PathBuf::from(&other["--config=".len()..]));
            }
            other if !other.starts_with('-') && config.is_none() => {
                config = Some(PathBuf::from(other));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let config = config.ok_or("no config file given (-c FILE)")?;
    Ok(Some(if check {
        Mode::Check(config)
    } else {
        Mode::Run(config)
    }))
}

fn main() -> ExitCode {
    let mode = match parse_args() {
        Ok(Some(m)) => m,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pooler: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match mode {
        Mode::Check(path) => match pooler::daemon::load_snapshot(&path, None) {
            Ok(snap) => {
                for w in &snap.config.warnings {
                    eprintln!("warning: {w} (ignored)");
                }
                println!("{}: configuration is valid", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        Mode::Run(path) => {
            env_logger::Builder::new()
                .filter_level(log::LevelFilter::Trace)
                .parse_default_env()
                .format_timestamp_millis()
                .init();
            if std::env::var_os("RUST_LOG").is_none() {
                log::set_max_level(log::LevelFilter::Info);
            }
            // The level from the file applies as soon as the file is read.
            if let Ok(text) = std::fs::read_to_string(&path) {
                if let Ok(cfg) = pooler::config::Config::parse(&text, &path) {
                    pooler::set_log_level(&cfg.pooler.log_level);
                }
            }
            match pooler::daemon::run(&path) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error!("{e}");
                    eprintln!("pooler: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
