//! The supply chain: `Cargo.lock` against the RustSec advisory database vendored in
//! `.ci/advisory-db` (see its README for the commit and how to refresh it), offline. This is the
//! check `cargo audit` makes, through the same library (`rustsec`, without its git and network
//! parts), so the test command needs no separately compiled tool.

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
