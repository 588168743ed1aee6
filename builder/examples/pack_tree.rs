//! Packs a directory into a compressed newc initramfs with ipa-build's packer.
//!
//! Used by `benches/pack.sh` to compare with `find | cpio | gzip`:
//!
//! ```text
//! cargo run --release --example pack_tree -- DIR OUT [--compression zstd|gzip|xz|none]
//!     [--level N] [--threads N] [--epoch SOURCE_DATE_EPOCH]
//! ```
//!
//! Prints one line: entries, uncompressed and compressed bytes, SHA-256.

use std::path::PathBuf;

use anyhow::{Context, bail};
use ipa_build::initramfs::{PackOptions, pack_to_file};
use ipa_build::stage::Tree;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut positional: Vec<String> = Vec::new();
    let mut opts = PackOptions::default();
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        opts.source_date_epoch = epoch.parse().context("SOURCE_DATE_EPOCH is not a number")?;
    }
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--compression" => opts.compression = value("--compression")?.parse()?,
            "--level" => opts.level = Some(value("--level")?.parse().context("--level")?),
            "--threads" => opts.threads = value("--threads")?.parse().context("--threads")?,
            "--epoch" => opts.source_date_epoch = value("--epoch")?.parse().context("--epoch")?,
            _ if a.starts_with("--") => bail!("unknown option {a}"),
            _ => positional.push(a),
        }
    }
    let [dir, out] = positional.as_slice() else {
        bail!(
            "usage: pack_tree DIR OUT [--compression zstd|gzip|xz|none] [--level N] [--threads N] [--epoch N]"
        );
    };
    let tree = Tree::new(PathBuf::from(dir));
    let report = pack_to_file(&tree, &opts, PathBuf::from(out).as_path())
        .with_context(|| format!("packing {dir} into {out}"))?;
    println!(
        "entries={} uncompressed={} compressed={} sha256={}",
        report.entries, report.uncompressed_bytes, report.compressed_bytes, report.sha256
    );
    Ok(())
}
