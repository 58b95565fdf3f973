//! Process-wide `tracing` subscriber: human-readable text by default, one JSON object per line with
//! `--log-format json`. The level is a `tracing` filter directive (`info`, `easel=debug`, ...).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Later calls (tests start several servers) are ignored.
pub fn init(level: &str, format: LogFormat) -> Result<(), String> {
    let filter = EnvFilter::try_new(level)
        .map_err(|e| format!("log level {level:?} is not a valid filter ({e}); use e.g. info, debug or easel=debug"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    Ok(())
}
