//! `ipa-build publish DIR`: everything publishing does to the outside world,
//! in order: read the build, find the cloud (clouds.yaml or `OS_*`), log in,
//! upload and verify every artifact, then (only if all verified) set the
//! nodes and prune old images. The steps themselves live in [`crate::publish`].

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::cmd::{Error, Outcome};
use crate::manifest::Manifest;
use crate::publish::{self, Options, Role, clouds};

/// Arguments of `ipa-build publish`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The build directory (with manifest.json), e.g. out/tinyipa.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Cloud name from clouds.yaml [default: $OS_CLOUD, else the OS_* variables].
    #[arg(long = "os-cloud", value_name = "NAME")]
    pub os_cloud: Option<String>,
    /// Image name prefix [default: the profile name].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Ironic nodes (names or UUIDs) to point at the uploaded kernel and ramdisk.
    #[arg(long = "set-nodes", value_name = "NODE", num_args = 1..)]
    pub set_nodes: Vec<String>,
    /// Which driver_info fields --set-nodes sets.
    #[arg(long = "as", value_enum, default_value = "rescue")]
    pub role: Role,
    /// Delete older images of the same profile beyond the newest N builds.
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}
/// Publishes the build; what was uploaded, set and deleted is the outcome.
pub fn run(args: &Args) -> Result<Outcome, Error> {
    let build = Manifest::read(&args.dir)?;
    let env = |k: &str| std::env::var(k).ok();
    let cloud =
        clouds::resolve(args.os_cloud.as_deref(), &env).map_err(publish::PublishError::from)?;
    let session =
        clouds::connect(&cloud, &publish::agent()).map_err(publish::PublishError::from)?;
    let outcome = publish::publish(
        &build,
        &session,
        &Options {
            name: args.name.clone(),
            set_nodes: args.set_nodes.clone(),
            role: Some(args.role),
            keep: args.keep,
        },
    )?;
    if args.json {
        return crate::cmd::json(&outcome).map(Outcome::success);
    }
    Ok(Outcome::success(render(&outcome, args.role)))
}

/// One line per image, node, deletion and spared image.
fn render(o: &publish::Outcome, role: Role) -> String {
    let mut s = String::new();
    for i in &o.images {
        let what = if i.existing {
            "already published"
        } else {
            "uploaded"
        };
        let _ = writeln!(s, "{} {} {} ({what})", i.kind, i.id, i.name);
    }
    for n in &o.nodes_set {
        let _ = writeln!(s, "node {n}: {role:?} kernel and ramdisk set");
    }
    for d in &o.deleted {
        let _ = writeln!(s, "deleted old image {d}");
    }
    for k in &o.kept_referenced {
        let _ = writeln!(s, "kept old image {k}: a listed node still references it");
    }
    s
}
