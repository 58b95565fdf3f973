//! Where the compiled web assets (wasm, js, css) are, wherever the binary is started from:
//! `LEPTOS_SITE_ROOT` when set, else `site/` beside the executable (the installed layout), else
//! `../site` from it (a cargo-leptos build: `target/release/easel` next to `target/site`), else
//! `target/site` under the working directory. Without them the page renders but never hydrates,
//! so a missing site is reported at start-up and by `easel doctor`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use leptos::config::LeptosOptions;

/// The crate's wasm output name (cargo-leptos `output-name`).
const OUTPUT_NAME: &str = "easel";
const DEFAULT_PKG_DIR: &str = "pkg";

/// Where the site was found, or every place that was tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteRoot {
    /// A folder with `<pkg>/easel.js` in it; `how` says which rule found it.
    Found { root: PathBuf, how: &'static str },
    /// None of the candidates holds the compiled site.
    Missing { tried: Vec<PathBuf> },
}

impl SiteRoot {
    /// One line for logs and `easel doctor`.
    pub fn describe(&self) -> String {
        match self {
            SiteRoot::Found { root, how } => format!("{} ({how})", root.display()),
            SiteRoot::Missing { tried } => format!(
                "MISSING: no compiled web UI (pkg/{OUTPUT_NAME}.js) in {}; the page will not work. Build it with \
                 `cargo leptos build --release`, install with scripts/install.sh, or set LEPTOS_SITE_ROOT",
                tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

/// The candidates in order, given the environment (`LEPTOS_SITE_ROOT`), the executable's path and
/// the working directory. Pure, so the rules are unit-tested.
fn candidates(env_root: Option<&Path>, exe: Option<&Path>, cwd: &Path) -> Vec<(PathBuf, &'static str)> {
    if let Some(root) = env_root {
        return vec![(cwd.join(root), "LEPTOS_SITE_ROOT")];
    }
    let mut found = Vec::new();
    if let Some(dir) = exe.and_then(Path::parent) {
        found.push((dir.join("site"), "beside the executable"));
        if let Some(up) = dir.parent() {
            found.push((up.join("site"), "the cargo-leptos build next to the executable"));
        }
    }
    let local = cwd.join("target/site");
    // From inside `target/<profile>/` the cargo-leptos candidate is this same folder: try it once.
    if !found.iter().any(|(root, _)| *root == local) {
        found.push((local, "target/site in the working directory"));
    }
    found
}

fn locate(env_root: Option<&Path>, exe: Option<&Path>, cwd: &Path, pkg_dir: &str) -> SiteRoot {
    let all = candidates(env_root, exe, cwd);
    let has_site = |root: &Path| root.join(pkg_dir).join(format!("{OUTPUT_NAME}.js")).is_file();
    match all.iter().find(|(root, _)| has_site(root)) {
        Some((root, how)) => SiteRoot::Found { root: root.clone(), how },
        None => SiteRoot::Missing { tried: all.into_iter().map(|(root, _)| root).collect() },
    }
}

fn pkg_dir() -> String {
    std::env::var("LEPTOS_SITE_PKG_DIR").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| DEFAULT_PKG_DIR.to_string())
}

/// Finds the site for this process (see the module docs).
pub fn site_root() -> SiteRoot {
    let env_root = std::env::var_os("LEPTOS_SITE_ROOT").filter(|v| !v.is_empty()).map(PathBuf::from);
    let exe = std::env::current_exe().ok();
    let cwd = std::env::current_dir().unwrap_or_default();
    locate(env_root.as_deref(), exe.as_deref(), &cwd, &pkg_dir())
}

/// Leptos options for serving at `addr` from the site [`site_root`] finds (a warning is logged
/// when there is none). The other `LEPTOS_*` variables cargo-leptos sets still apply.
pub fn leptos_options(addr: SocketAddr) -> LeptosOptions {
    // Leptos reads the other settings from `LEPTOS_*` variables, and complains on stderr when the
    // build did not come from cargo-leptos (no LEPTOS_OUTPUT_NAME); then the defaults serve.
    let configured = option_env!("LEPTOS_OUTPUT_NAME").is_some() || std::env::var_os("LEPTOS_OUTPUT_NAME").is_some();
    let mut options = configured
        .then(|| leptos::config::get_configuration(None).ok())
        .flatten()
        .map(|conf| conf.leptos_options)
        .unwrap_or_else(|| LeptosOptions::builder().output_name(OUTPUT_NAME).build());
    options.output_name = OUTPUT_NAME.into();
    match site_root() {
        SiteRoot::Found { root, how } => {
            tracing::debug!(root = %root.display(), how, "web assets");
            options.site_root = root.to_string_lossy().as_ref().into();
        }
        missing @ SiteRoot::Missing { .. } => tracing::warn!("web UI: {}", missing.describe()),
    }
    options.site_addr = addr;
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site_in(root: &Path) {
        std::fs::create_dir_all(root.join("pkg")).unwrap();
        std::fs::write(root.join("pkg/easel.js"), "").unwrap();
    }

    #[test]
    fn the_site_is_found_from_any_working_directory() {
        let base = std::env::temp_dir().join(format!("easel-site-{}", std::process::id()));
        let elsewhere = base.join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        // A cargo-leptos build: target/release/easel beside target/site.
        let exe = base.join("target/release/easel");
        site_in(&base.join("target/site"));
        let found = locate(None, Some(&exe), &elsewhere, "pkg");
        assert_eq!(found, SiteRoot::Found { root: base.join("target/site"), how: "the cargo-leptos build next to the executable" });
        // Installed: site/ beside the executable wins.
        site_in(&base.join("target/release/site"));
        assert!(matches!(locate(None, Some(&exe), &elsewhere, "pkg"), SiteRoot::Found { how: "beside the executable", .. }));
        // LEPTOS_SITE_ROOT, relative to the working directory, is the only candidate when set.
        let relative = locate(Some(Path::new("../target/site")), Some(&exe), &elsewhere, "pkg");
        assert!(matches!(relative, SiteRoot::Found { how: "LEPTOS_SITE_ROOT", .. }), "{relative:?}");
        let missing = locate(Some(Path::new("nowhere")), Some(&exe), &elsewhere, "pkg");
        assert!(missing.describe().starts_with("MISSING") && missing.describe().contains("nowhere"), "{}", missing.describe());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn nothing_found_names_every_place_tried() {
        let base = std::env::temp_dir().join(format!("easel-nosite-{}", std::process::id()));
        let SiteRoot::Missing { tried } = locate(None, Some(&base.join("bin/easel")), &base, "pkg") else { panic!("found a site") };
        assert_eq!(tried, [base.join("bin/site"), base.join("site"), base.join("target/site")]);
        // A binary in target/debug run from the checkout: target/site is tried once.
        let SiteRoot::Missing { tried } = locate(None, Some(&base.join("target/debug/easel")), &base, "pkg") else {
            panic!("found a site")
        };
        assert_eq!(tried, [base.join("target/debug/site"), base.join("target/site")]);
    }
}
