//! The Debian release a profile names, laid over the apt sources that say
//! where the archive is.
//!
//! Which release an image is built from is part of what the image *is*
//! (kernel 6.1 or 6.12, `.ko` or `.ko.xz`, systemd 252 or 257), so it belongs
//! in the profile: the same profile must give the same image on a bookworm
//! and on a trixie build host. Where the archive lives is the host's business
//! (its mirror, proxy or snapshot), so the host's apt sources (or
//! `--mirror`) still supply the URI, components and keyring. A profile that
//! names no release keeps the host's suites, as before.
//!
//! The release replaces the codename of every Debian suite and keeps its
//! suffix: `bookworm` → `trixie`, `bookworm-updates` → `trixie-updates`,
//! `bookworm-security` → `trixie-security`. Sources whose suites are not
//! Debian's (a vendor's `cloud-sdk-bookworm`) are dropped: they are the
//! host's extras, and keeping them would make the image depend on the host.

use super::{DebianError, Source};

/// Release codenames a profile may name: the ones with an archive today
/// (bullseye is LTS, bookworm oldstable, trixie stable, forky testing) plus
/// `sid`. The list is short on purpose: a typo must be an error naming the
/// nearest release, not an `InRelease` download that fails.
pub const RELEASES: &[&str] = &["bullseye", "bookworm", "trixie", "forky", "sid"];

/// Codenames we recognise in the host's suites, to replace them. Wider than
/// [`RELEASES`]: a host may still list an archived release.
const KNOWN_CODENAMES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "stable",
    "oldstable",
    "testing",
    "unstable",
];

/// Whether every suite of `source` is a Debian suite from bookworm on (the
/// releases with a `non-free-firmware` component).
pub fn is_debian(source: &Source) -> bool {
    !source.suites.is_empty()
        && source.suites.iter().all(|s| {
            debian_suffix(s).is_some() && !s.starts_with("buster") && !s.starts_with("bullseye")
        })
}

/// `bookworm-updates` → `Some("-updates")`; `None` for a suite that is not
/// Debian's.
fn debian_suffix(suite: &str) -> Option<&str> {
    KNOWN_CODENAMES.iter().find_map(|c| {
        let rest = suite.strip_prefix(c)?;
        (rest.is_empty() || rest.starts_with('-')).then_some(rest)
    })
}

/// The sources with every Debian suite moved to `release`, non-Debian
/// sources left out. `sid` has no `-updates` or `-security` suites, so only
/// its bare suite is kept. When no source is Debian's but a `--mirror` was
/// given, the mirror (main, Debian's keyring) serves `release` and
/// `release-updates`; `--mirror` then replaces its URI as usual.
pub fn for_release(
    sources: &[Source],
    release: &str,
    mirror: Option<&str>,
) -> Result<Vec<Source>, DebianError> {
    let mut out: Vec<Source> = Vec::new();
    for s in sources {
        let mut suites: Vec<String> = Vec::new();
        for suffix in s.suites.iter().filter_map(|x| debian_suffix(x)) {
            if release == "sid" && !suffix.is_empty() {
                continue;
            }
            let suite = format!("{release}{suffix}");
            if !suites.contains(&suite) {
                suites.push(suite);
            }
        }
        if !suites.is_empty() {
            out.push(Source {
                suites,
                ..s.clone()
            });
        }
    }
    if out.is_empty()
        && let Some(uri) = mirror
    {
        let mut suites = vec![release.to_string()];
        if release != "sid" {
            suites.push(format!("{release}-updates"));
        }
        out.push(Source {
            uri: uri.trim_end_matches('/').to_string(),
            suites,
            components: vec!["main".into()],
            keyring: super::sources::DEFAULT_KEYRING.into(),
        });
    }
    if out.is_empty() {
        let listed: Vec<String> = sources
            .iter()
            .map(|s| format!("{} {}", s.uri, s.suites.join(" ")))
            .collect();
        return Err(DebianError::NoDebianSource {
            release: release.to_string(),
            listed: listed.join("; "),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn src(uri: &str, suites: &[&str]) -> Source {
        Source {
            uri: uri.into(),
            suites: suites.iter().map(|s| s.to_string()).collect(),
            components: vec!["main".into()],
            keyring: PathBuf::from("/k.gpg"),
        }
    }

    #[test]
    fn release_replaces_codenames_and_keeps_suffixes() {
        let host = [
            src("http://m/debian", &["bookworm", "bookworm-updates"]),
            src("http://m/debian-security", &["bookworm-security"]),
            src("https://vendor/apt", &["cloud-sdk-bookworm"]),
        ];
        let got = for_release(&host, "trixie", None).unwrap();
        assert_eq!(
            got,
            [
                src("http://m/debian", &["trixie", "trixie-updates"]),
                src("http://m/debian-security", &["trixie-security"]),
            ]
        );
        let sid = for_release(&host, "sid", None).unwrap();
        assert_eq!(sid, [src("http://m/debian", &["sid"])]);
    }

    #[test]
    fn a_host_without_debian_suites_is_explained() {
        let ubuntu = [src("http://u/ubuntu", &["noble"])];
        let err = for_release(&ubuntu, "trixie", None).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("trixie") && msg.contains("noble") && msg.contains("--mirror"),
            "{msg}"
        );
        let got = for_release(&ubuntu, "trixie", Some("http://m/debian/")).unwrap();
        let mut want = src("http://m/debian", &["trixie", "trixie-updates"]);
        want.keyring = super::super::sources::DEFAULT_KEYRING.into();
        assert_eq!(got, [want]);
    }

    #[test]
    fn non_free_firmware_goes_only_to_debian_sources_that_have_it() {
        assert!(is_debian(&src(
            "http://m/debian",
            &["trixie", "trixie-updates"]
        )));
        assert!(is_debian(&src(
            "http://m/debian-security",
            &["bookworm-security"]
        )));
        assert!(!is_debian(&src("http://m/debian", &["bullseye"])));
        assert!(!is_debian(&src(
            "http://vendor/apt",
            &["cloud-sdk-bookworm"]
        )));
        assert!(!is_debian(&src("http://m/debian", &[])));
    }
}
