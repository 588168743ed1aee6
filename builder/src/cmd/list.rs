//! `ipa-build list`: the profiles and elements found, with their descriptions.

use std::fmt::Write as _;

use crate::cmd::{Error, Outcome, PathArgs};
use crate::config::{element, profile};

/// Arguments of `ipa-build list`.
pub type Args = PathArgs;

/// Lists profiles, then elements. Every one is loaded, so `list` is also a
/// quick check: one that does not load is a config error (exit 3).
pub fn run(args: &Args) -> Result<Outcome, Error> {
    let search = args.search_paths();
    let mut out = table("profiles", &profile::list(&search.profiles)?);
    out.push('\n');
    out.push_str(&table("elements", &element::list(&search.elements)?));
    Ok(Outcome::success(out))
}

/// `title:` then one `  name  description` line each, names aligned.
fn table(title: &str, items: &[(String, String)]) -> String {
    let mut s = format!("{title}:\n");
    let width = items.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, desc) in items {
        let _ = writeln!(s, "  {name:<width$}  {desc}");
    }
    s
}
