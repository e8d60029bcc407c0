//! Logging setup: human-readable by default, JSON on request.

use fjord_config::{LogFormat, LogOutputConfig};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` overrides the configured level.
/// openraft logs every vote and membership step at `info`; unless the
/// directive names it, it logs warnings only (our own cluster code logs
/// leader changes and fencing itself).
pub fn init(cfg: &LogOutputConfig) -> anyhow::Result<()> {
    let level = if cfg.level.contains("openraft") { cfg.level.clone() } else { format!("{},openraft=warn", cfg.level) };
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&level))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match cfg.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("{e}"))
}
