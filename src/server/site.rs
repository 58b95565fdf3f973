//! Where the compiled web assets are, for both ways Easel is run: from a source checkout
//! (`target/site`, as cargo-leptos builds it) and installed (`<exe dir>/site`).

use std::net::SocketAddr;
use std::path::PathBuf;

use leptos::config::LeptosOptions;

/// Leptos options for serving at `addr`. `LEPTOS_*` variables still override, as cargo-leptos
/// expects; without `LEPTOS_SITE_ROOT`, a `site/` folder beside the executable wins over
/// `target/site` so an installed binary works from any directory.
pub fn leptos_options(addr: SocketAddr) -> LeptosOptions {
    let configured = option_env!("LEPTOS_OUTPUT_NAME").is_some() || std::env::var_os("LEPTOS_OUTPUT_NAME").is_some();
    let mut options = configured
        .then(|| leptos::config::get_configuration(None).ok())
        .flatten()
        .map(|conf| conf.leptos_options)
        .unwrap_or_else(|| LeptosOptions::builder().output_name("easel").site_root("target/site").build());
    if std::env::var_os("LEPTOS_SITE_ROOT").is_none() {
        if let Some(installed) = installed_site_root() {
            options.site_root = installed.to_string_lossy().as_ref().into();
        }
    }
    options.site_addr = addr;
    options
}

fn installed_site_root() -> Option<PathBuf> {
    let dir = std::env::current_exe().ok()?.parent()?.join("site");
    dir.join("pkg").is_dir().then_some(dir)
}
