//! Stage 7, second half: the secret audit of the scrubbed tree.
//!
//! A finding of severity `error` fails the build before anything is packed,
//! so an image with a secret in it is never written; warnings (such as an
//! `authorized_keys`) are reported and recorded in the manifest. The
//! scanning itself lives in [`crate::audit`], shared with `ipa-build audit`.

use super::BuildError;
use crate::audit::{self, AuditReport};
use crate::config::profile::Profile;
use crate::report::Reporter;
use crate::stage::Tree;

/// Stage 7 (audit): returns the report for the manifest when nothing secret was found.
pub fn audit(
    tree: &Tree,
    profile: &Profile,

    reporter: &Reporter,
) -> Result<AuditReport, BuildError> {
    let st = reporter.stage("audit", "scanning every file for secrets");
    let findings = audit::audit_dir(tree.root(), &profile.audit.allow, super::threads())?;
    for w in findings.warnings() {
        reporter.warn(format!(
            "audit: {} at {} offset {}: {}",
            w.rule, w.path, w.offset, w.preview
        ));
    }
    if findings.errors().next().is_some() {
        return Err(BuildError::Secrets(findings.render()));
    }
    st.done(format!("{} files, nothing secret", findings.files_scanned));
    Ok(findings)
}
