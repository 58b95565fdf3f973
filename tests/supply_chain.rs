//! The supply chain, offline, with no separately compiled tool — the checks `cargo deny` makes:
//! - advisories: `Cargo.lock` against the RustSec advisory database vendored in `.ci/advisory-db`
//!   (see its README for the commit and how to refresh it), through the library `cargo audit`
//!   uses (`rustsec`, without its git and network parts);
//! - licences: every package `cargo metadata` resolves (all features, all targets) under an SPDX
//!   expression that [`ALLOWED_LICENCES`] satisfies;
//! - sources and bans: every package from crates.io (no git or other registries), none of
//!   [`BANNED`]; crates present in several versions are listed (a warning, as cargo deny's
//!   default).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use rustsec::report::{Report, Settings};
use rustsec::{Database, Lockfile};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn database() -> Database {
    let db = Database::open(&root().join(".ci/advisory-db")).expect("the vendored advisory database in .ci/advisory-db");
    assert!(db.iter().count() > 1000, "only {} advisories loaded", db.iter().count());
    db
}

/// `id crate version: title` for every vulnerability the report lists.
fn vulnerabilities(report: &Report) -> Vec<String> {
    report
        .vulnerabilities
        .list
        .iter()
        .map(|v| format!("{} {} {}: {}", v.advisory.id, v.package.name, v.package.version, v.advisory.title))
        .collect()
}

#[test]
fn no_dependency_in_cargo_lock_has_a_known_vulnerability() {
    let lockfile = Lockfile::load(root().join("Cargo.lock")).expect("Cargo.lock");
    let report = Report::generate(&database(), &lockfile, &Settings::default());
    let found = vulnerabilities(&report);
    assert!(found.is_empty(), "vulnerable dependencies (update them, or justify an ignore here):\n{}", found.join("\n"));
    // Unmaintained or unsound crates are reported, not failed on: today `paste` (through leptos
    // and tokenizers) is unmaintained.
    for (kind, warnings) in &report.warnings {
        for warning in warnings {
            eprintln!("warning ({kind:?}): {} {}", warning.package.name, warning.package.version);
        }
    }
}

/// The check can fail: a lock file with `smallvec 1.6.0` (RUSTSEC-2021-0003, a buffer overflow in
/// `insert_many`) is reported.
#[test]
fn a_vulnerable_lock_file_is_reported() {
    let lockfile = Lockfile::from_str(
        "version = 3\n\n[[package]]\nname = \"smallvec\"\nversion = \"1.6.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
    )
    .unwrap();
    let found = vulnerabilities(&Report::generate(&database(), &lockfile, &Settings::default()));
    assert!(found.iter().any(|v| v.starts_with("RUSTSEC-2021-0003 smallvec 1.6.0")), "{found:?}");
}

/// Licences Easel's binary may include: permissive ones, and MPL-2.0 (file-level copyleft: the
/// crate's own files stay MPL; `option-ext`, through `dirs`, is unmodified).
const ALLOWED_LICENCES: [&str; 13] = [
    "MIT",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "Unicode-3.0",
    "Unlicense",
    "CC0-1.0",
    "BSL-1.0",
    "0BSD",
    "CDLA-Permissive-2.0",
    "MPL-2.0",
];

/// Crates Easel must not link: a system OpenSSL would break the one-binary install (TLS is
/// rustls).
const BANNED: [&str; 2] = ["openssl-sys", "openssl"];

/// Whether an SPDX licence expression is satisfied by [`ALLOWED_LICENCES`]: `OR` needs one side,
/// `AND` both, `X WITH exception` what `X` needs; the old `/` separator is `OR`.
fn licence_allowed(expression: &str) -> bool {
    let spaced = expression.replace('(', " ( ").replace(')', " ) ").replace('/', " OR ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut at = 0;
    let allowed = or_expression(&tokens, &mut at);
    allowed == Some(true) && at == tokens.len()
}

fn or_expression(tokens: &[&str], at: &mut usize) -> Option<bool> {
    let mut any = and_expression(tokens, at)?;
    while tokens.get(*at) == Some(&"OR") {
        *at += 1;
        any |= and_expression(tokens, at)?;
    }
    Some(any)
}

fn and_expression(tokens: &[&str], at: &mut usize) -> Option<bool> {
    let mut all = term(tokens, at)?;
    while tokens.get(*at) == Some(&"AND") {
        *at += 1;
        all &= term(tokens, at)?;
    }
    Some(all)
}

fn term(tokens: &[&str], at: &mut usize) -> Option<bool> {
    let token = *tokens.get(*at)?;
    *at += 1;
    let value = if token == "(" {
        let inner = or_expression(tokens, at)?;
        (tokens.get(*at) == Some(&")")).then_some(())?;
        *at += 1;
        inner
    } else {
        ALLOWED_LICENCES.contains(&token)
    };
    if tokens.get(*at) == Some(&"WITH") {
        *at += 2;
    }
    Some(value)
}

/// `cargo metadata` of the whole crate (all features, every target platform), offline.
fn metadata() -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--all-features", "--locked", "--offline"])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON")
}

#[test]
fn every_dependency_is_from_crates_io_under_an_allowed_licence_and_none_is_banned() {
    let metadata = metadata();
    let packages = metadata["packages"].as_array().expect("packages");
    assert!(packages.len() > 300, "only {} packages resolved (features missing?)", packages.len());
    let mut problems = Vec::new();
    let mut versions: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for package in packages {
        let (name, version) = (package["name"].as_str().unwrap(), package["version"].as_str().unwrap());
        versions.entry(name).or_default().push(version);
        if name == "easel" {
            continue;
        }
        match package["license"].as_str() {
            Some(expression) if licence_allowed(expression) => {}
            Some(expression) => problems.push(format!("{name} {version}: licence {expression:?} is not allowed")),
            None => problems.push(format!("{name} {version}: no SPDX licence (only a licence file); review it and list it here")),
        }
        let source = package["source"].as_str().unwrap_or("");
        if source != "registry+https://github.com/rust-lang/crates.io-index" {
            problems.push(format!("{name} {version}: from {source:?}, not crates.io"));
        }
        if BANNED.contains(&name) {
            problems.push(format!("{name} {version} is banned"));
        }
    }
    assert!(problems.is_empty(), "supply-chain problems:\n{}", problems.join("\n"));
    for (name, found) in versions.iter().filter(|(_, v)| v.len() > 1) {
        eprintln!("warning: {name} in {} versions: {}", found.len(), found.join(", "));
    }
}

/// The licence check can fail, and reads SPDX as cargo deny does.
#[test]
fn licence_expressions_are_read_as_spdx() {
    for ok in ["MIT", "MIT OR Apache-2.0", "MIT/Apache-2.0", "Apache-2.0 WITH LLVM-exception OR MIT", "(MIT OR Apache-2.0) AND Unicode-3.0"]
    {
        assert!(licence_allowed(ok), "{ok}");
    }
    for refused in ["GPL-3.0-only", "MIT AND GPL-2.0-only", "(MIT OR Apache-2.0) AND AGPL-3.0-only", "SSPL-1.0 WITH x", "MIT OR", "(MIT"] {
        assert!(!licence_allowed(refused), "{refused}");
    }
    assert!(licence_allowed("MIT OR Apache-2.0 OR LGPL-2.1-or-later"), "one allowed choice is enough");
}
