//! The dependency closure of the packages a profile names.
//!
//! This is a deliberately small resolver, not apt: it follows `Depends` and
//! `Pre-Depends` (never `Recommends`), takes the highest version that
//! satisfies each relation, and for `a | b` keeps whichever alternative is
//! already selected, else the first one that can be satisfied. Virtual
//! packages resolve through `Provides` (versioned provides included). It
//! does not handle `Conflicts`/`Breaks`: a ramdisk is a handful of packages
//! from one suite, where those never bite, and an image is not a system
//! `dpkg` will later upgrade.
//!
//! The result is sorted by name so that the same indices give the same
//! image, whatever order the profile listed packages in.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::version::{self, Op};
use super::{Archive, DebianError, Package};

/// One alternative of a relation: `name (op version)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rel {
    pub name: String,
    pub constraint: Option<(Op, String)>,
}

impl std::fmt::Display for Rel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.constraint {
            Some((op, v)) => write!(f, "{} ({op} {v})", self.name),
            None => f.write_str(&self.name),
        }
    }
}

fn show_group(g: &[Rel]) -> String {
    g.iter().map(Rel::to_string).collect::<Vec<_>>().join(" | ")
}

/// Parses a relation field (`a (>= 1) | b:any, c [amd64]`) into groups of
/// alternatives. Alternatives restricted to other architectures are
/// dropped; `:any`/`:native`/`:ARCH` qualifiers are removed (we install
/// one architecture).
pub fn parse_relations(field: &str, arch: &str) -> Result<Vec<Vec<Rel>>, String> {
    let mut groups = Vec::new();
    for group in field.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let mut alts = Vec::new();
        for alt in group.split('|').map(str::trim) {
            if let Some(rel) = parse_alt(alt, arch)? {
                alts.push(rel);
            }
        }
        if !alts.is_empty() {
            groups.push(alts);
        }
    }
    Ok(groups)
}

fn parse_alt(alt: &str, arch: &str) -> Result<Option<Rel>, String> {
    let mut rest = alt;
    // Build profiles `<...>` never appear in binary packages; drop them.
    if let Some(i) = rest.find('<')
        && !rest[..i].contains('(')
    {
        rest = &rest[..i];
    }
    let mut arch_ok = true;
    if let Some(i) = rest.find('[') {
        let list = rest[i + 1..].split(']').next().unwrap_or("");
        let words: Vec<&str> = list.split_whitespace().collect();
        let neg = words.iter().any(|w| w.starts_with('!'));
        arch_ok = if neg {
            !words.iter().any(|w| w.strip_prefix('!') == Some(arch))
        } else {
            words.contains(&arch)
        };
        rest = &rest[..i];
    }
    let (name_part, constraint) = match rest.split_once('(') {
        Some((n, c)) => {
            let c = c.split(')').next().unwrap_or("").trim();
            let split = c.find(|ch: char| !"<>=".contains(ch)).unwrap_or(c.len());
            let (op, ver) = c.split_at(split);
            let op =
                Op::parse(op.trim()).ok_or_else(|| format!("bad relation operator in {alt:?}"))?;
            let ver = ver.trim();
            if ver.is_empty() {
                return Err(format!("missing version in {alt:?}"));
            }
            (n.trim(), Some((op, ver.to_string())))
        }
        None => (rest.trim(), None),
    };
    if name_part.is_empty() {
        return Err(format!("empty package name in {alt:?}"));
    }
    let name = name_part.split(':').next().unwrap_or(name_part);
    if !arch_ok {
        return Ok(None);
    }
    Ok(Some(Rel {
        name: name.to_string(),
        constraint,
    }))
}

/// Lower is preferred when several packages provide the same virtual name.
fn priority_rank(p: &str) -> u8 {
    match p {
        "required" => 0,
        "important" => 1,
        "standard" => 2,
        "optional" => 3,
        _ => 4,
    }
}

impl Archive {
    /// The highest version of a real package `rel` names that satisfies it;
    /// ties go to the first source.
    fn best_real(&self, rel: &Rel) -> Option<usize> {
        let mut best: Option<usize> = None;
        for &i in self.by_name.get(&rel.name)? {
            let v = &self.packages[i].version;
            if rel
                .constraint
                .as_ref()
                .is_some_and(|(op, want)| !op.holds(v, want))
            {
                continue;
            }
            if best.is_none_or(|b| version::compare(v, &self.packages[b].version).is_gt()) {
                best = Some(i);
            }
        }
        best
    }

    /// Providers of `rel.name` whose provided version satisfies `rel`.
    fn providers_for(&self, rel: &Rel) -> Vec<usize> {
        let Some(list) = self.providers.get(&rel.name) else {
            return Vec::new();
        };
        list.iter()
            .filter(|(_, pv)| match (&rel.constraint, pv) {
                (None, _) => true,
                (Some((op, want)), Some(have)) => op.holds(have, want),
                (Some(_), None) => false,
            })
            .map(|(i, _)| *i)
            .collect()
    }

    fn satisfied(&self, rel: &Rel, selected: &BTreeMap<String, usize>) -> bool {
        if let Some(&i) = selected.get(&rel.name)
            && rel
                .constraint
                .as_ref()
                .is_none_or(|(op, want)| op.holds(&self.packages[i].version, want))
        {
            return true;
        }
        self.providers_for(rel)
            .iter()
            .any(|&i| self.is_selected(i, selected))
    }

    /// The package to select for `rel`: a real package first, else the best
    /// provider (an already selected one, else by priority, then name, then
    /// highest version).
    fn choose(&self, rel: &Rel, selected: &BTreeMap<String, usize>) -> Option<usize> {
        if let Some(i) = self.best_real(rel) {
            return Some(i);
        }
        let provs = self.providers_for(rel);
        if let Some(&i) = provs.iter().find(|&&i| self.is_selected(i, selected)) {
            return Some(i);
        }
        provs.into_iter().min_by(|&a, &b| {
            let (pa, pb) = (&self.packages[a], &self.packages[b]);
            priority_rank(&pa.priority)
                .cmp(&priority_rank(&pb.priority))
                .then_with(|| pa.name.cmp(&pb.name))
                .then_with(|| version::compare(&pb.version, &pa.version))
        })
    }

    /// Whether package `i`, or the same name and version from another suite,
    /// is selected.
    fn is_selected(&self, i: usize, selected: &BTreeMap<String, usize>) -> bool {
        let p = &self.packages[i];
        selected
            .get(&p.name)
            .is_some_and(|&s| self.packages[s].version == p.version)
    }

    /// Whether any package (real or virtual) has this name.
    fn known(&self, name: &str) -> bool {
        self.by_name.contains_key(name) || self.providers.contains_key(name)
    }

    /// Up to three known names closest to `name`.
    pub fn suggest(&self, name: &str) -> Vec<String> {
        let limit = (name.len() / 3).max(2);
        let mut scored: Vec<(usize, &String)> = self
            .by_name
            .keys()
            .chain(self.providers.keys())
            .filter_map(|cand| {
                let d = if cand.starts_with(name) && cand.len() <= name.len() + 8 {
                    1
                } else {
                    levenshtein(name, cand)
                };
                (d <= limit).then_some((d, cand))
            })
            .collect();
        scored.sort();
        scored.dedup_by(|a, b| a.1 == b.1);
        scored.into_iter().take(3).map(|(_, n)| n.clone()).collect()
    }

    fn unknown(&self, name: &str, chain: Vec<String>) -> DebianError {
        DebianError::UnknownPackage {
            name: name.to_string(),
            chain,
            suggestions: self.suggest(name),
        }
    }

    /// The dependency closure of `names` over `Depends` and `Pre-Depends`,
    /// sorted by package name.
    pub fn resolve<'n>(
        &self,
        names: impl IntoIterator<Item = &'n String>,
    ) -> Result<Vec<Package>, DebianError> {
        let mut selected: BTreeMap<String, usize> = BTreeMap::new();
        let mut parent: HashMap<String, String> = HashMap::new();
        let mut queue = VecDeque::new();
        for name in names {
            let rel = Rel {
                name: name.clone(),
                constraint: None,
            };
            if self.satisfied(&rel, &selected) {
                continue;
            }
            let i = self
                .choose(&rel, &selected)
                .ok_or_else(|| self.unknown(name, Vec::new()))?;
            selected.insert(self.packages[i].name.clone(), i);
            queue.push_back(i);
        }
        let chain_of = |name: &str, parent: &HashMap<String, String>| {
            let mut chain = vec![name.to_string()];
            while let Some(p) = parent.get(chain.last().map(String::as_str).unwrap_or_default()) {
                if chain.contains(p) || chain.len() > 64 {
                    break;
                }
                chain.push(p.clone());
            }
            chain.reverse();
            chain
        };
        while let Some(i) = queue.pop_front() {
            let pkg = &self.packages[i];
            for field in [&pkg.pre_depends, &pkg.depends] {
                let groups = parse_relations(field, &self.arch).map_err(|msg| {
                    DebianError::Unsatisfiable {
                        relation: field.clone(),
                        chain: chain_of(&pkg.name, &parent),
                        msg: format!(
                            "cannot parse the dependency field of {} {}: {msg}",
                            pkg.name, pkg.version
                        ),
                    }
                })?;
                for group in groups {
                    if group.iter().any(|r| self.satisfied(r, &selected)) {
                        continue;
                    }
                    let Some(j) = group.iter().find_map(|r| self.choose(r, &selected)) else {
                        let chain = chain_of(&pkg.name, &parent);
                        if group.len() == 1 && !self.known(&group[0].name) {
                            return Err(self.unknown(&group[0].name, chain));
                        }
                        let versions: Vec<String> = group
                            .iter()
                            .flat_map(|r| self.by_name.get(&r.name).into_iter().flatten())
                            .map(|&k| {
                                format!("{} {}", self.packages[k].name, self.packages[k].version)
                            })
                            .collect();
                        let msg = if versions.is_empty() {
                            "no package provides it".to_string()
                        } else {
                            format!("available: {}", versions.join(", "))
                        };
                        return Err(DebianError::Unsatisfiable {
                            relation: show_group(&group),
                            chain,
                            msg,
                        });
                    };
                    let chosen = &self.packages[j];
                    if let Some(&old) = selected.get(&chosen.name) {
                        return Err(DebianError::Unsatisfiable {
                            relation: show_group(&group),
                            chain: chain_of(&pkg.name, &parent),
                            msg: format!(
                                "{} {} is already selected (needed by {})",
                                chosen.name,
                                self.packages[old].version,
                                chain_of(&chosen.name, &parent).join(" -> ")
                            ),
                        });
                    }
                    selected.insert(chosen.name.clone(), j);
                    parent.insert(chosen.name.clone(), pkg.name.clone());
                    queue.push_back(j);
                }
            }
        }
        Ok(selected
            .into_values()
            .map(|i| self.packages[i].clone())
            .collect())
    }

    /// The best candidate for `name` alone, without its dependencies: for
    /// packages used only as a source of files on the build host side, such
    /// as the bootloaders copied into an ISO.
    pub fn resolve_exact(&self, name: &str) -> Result<Package, DebianError> {
        let rel = Rel {
            name: name.to_string(),
            constraint: None,
        };
        self.choose(&rel, &BTreeMap::new())
            .map(|i| self.packages[i].clone())
            .ok_or_else(|| self.unknown(name, Vec::new()))
    }

    /// Follows a kernel metapackage (`linux-image-amd64`) through its
    /// `linux-image-*` dependencies to the package that holds the kernel
    /// (`linux-image-6.1.0-NN-amd64`), without pulling anything else: the
    /// image needs `vmlinuz` and modules, not `kmod` or `initramfs-tools`.
    pub fn resolve_kernel(&self, name: &str) -> Result<Package, DebianError> {
        let rel = Rel {
            name: name.to_string(),
            constraint: None,
        };
        let mut i = self
            .choose(&rel, &BTreeMap::new())
            .ok_or_else(|| self.unknown(name, Vec::new()))?;
        let mut chain = vec![self.packages[i].name.clone()];
        for _ in 0..8 {
            let pkg = &self.packages[i];
            let groups = parse_relations(&pkg.depends, &self.arch).map_err(|msg| {
                DebianError::Unsatisfiable {
                    relation: pkg.depends.clone(),
                    chain: chain.clone(),
                    msg,
                }
            })?;
            let next = groups
                .iter()
                .flatten()
                .filter(|r| {
                    r.name.starts_with("linux-image-") && self.by_name.contains_key(&r.name)
                })
                .find_map(|r| self.best_real(r));
            match next {
                Some(j) => {
                    i = j;
                    chain.push(self.packages[j].name.clone());
                }
                None => return Ok(pkg.clone()),
            }
        }
        Err(DebianError::Unsatisfiable {
            relation: name.to_string(),
            chain,
            msg: "linux-image-* dependencies do not end in a kernel package".into(),
        })
    }
}

/// Edit distance, for "did you mean" suggestions.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::fetch::Transport;

    fn pkg(name: &str, version: &str, depends: &str, provides: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            filename: format!("pool/{name}_{version}.deb"),
            sha256: "0".repeat(64),
            size: 1,
            installed_size_kib: None,
            source_uri: "file:///m".into(),
            suite: "s".into(),
            component: "main".into(),
            depends: depends.into(),
            pre_depends: String::new(),
            provides: provides.into(),
            essential: false,
            priority: "optional".into(),
        }
    }

    fn archive(p: Vec<Package>) -> Archive {
        Archive::from_packages(p, "amd64", false, Transport::new())
    }

    fn names(v: &[Package]) -> Vec<String> {
        v.iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect()
    }

    #[test]
    fn relation_parsing() {
        let g = parse_relations(
            "libc6 (>= 2.34), a:any | b (<< 2~) [i386], c [!amd64], d:native",
            "amd64",
        )
        .unwrap();
        assert_eq!(g.len(), 3);
        assert_eq!(
            g[0][0],
            Rel {
                name: "libc6".into(),
                constraint: Some((Op::Ge, "2.34".into()))
            }
        );
        assert_eq!(g[1].len(), 1);
        assert_eq!(g[1][0].name, "a");
        assert_eq!(g[2][0].name, "d");
        assert!(parse_relations("x (~> 1)", "amd64").is_err());
    }

    #[test]
    fn closure_versions_alternatives_and_provides() {
        let a = archive(vec![
            pkg(
                "app",
                "1",
                "libc (>= 2), mta | postfix, awk:any, old (<< 2)",
                "",
            ),
            pkg("libc", "1", "", ""),
            pkg("libc", "3", "", ""),
            pkg("exim", "4", "", "mta"),
            pkg("postfix", "3", "", "mta"),
            pkg("mawk", "1.3", "", "awk (= 1.3)"),
            pkg("old", "1", "", ""),
            pkg("old", "2", "", ""),
        ]);
        let r = a.resolve(&["app".into()]).unwrap();
        assert_eq!(
            names(&r),
            ["app=1", "exim=4", "libc=3", "mawk=1.3", "old=1"]
        );
        // An alternative already selected wins over the first one.
        let r = a.resolve(&["postfix".into(), "app".into()]).unwrap();
        assert!(
            names(&r).contains(&"postfix=3".to_string())
                && !names(&r).contains(&"exim=4".to_string())
        );
    }

    #[test]
    fn versioned_provides() {
        let a = archive(vec![
            pkg("x", "1", "awk (>= 2)", ""),
            pkg("mawk", "1", "", "awk (= 1)"),
            pkg("gawk", "5", "", "awk (= 5)"),
        ]);
        assert_eq!(names(&a.resolve(&["x".into()]).unwrap()), ["gawk=5", "x=1"]);
    }

    #[test]
    fn unknown_dependency_names_chain_and_suggests() {
        let a = archive(vec![
            pkg("top", "1", "mid", ""),
            pkg("mid", "1", "libfoo2", ""),
            pkg("libfoo1", "1", "", ""),
        ]);
        let e = a.resolve(&["top".into()]).unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown package `libfoo2` (needed by top -> mid); did you mean libfoo1?"
        );
        let e = a.resolve(&["mdi".into()]).unwrap_err().to_string();
        assert_eq!(e, "unknown package `mdi`; did you mean mid?");
    }

    #[test]
    fn unsatisfiable_version() {
        let a = archive(vec![
            pkg("top", "1", "lib (>= 5)", ""),
            pkg("lib", "4", "", ""),
        ]);
        let e = a.resolve(&["top".into()]).unwrap_err().to_string();
        assert_eq!(
            e,
            "cannot satisfy `lib (>= 5)` (needed by top): available: lib 4"
        );
    }

    #[test]
    fn kernel_metapackage_without_its_dependencies() {
        let a = archive(vec![
            pkg(
                "linux-image-amd64",
                "6.1.1",
                "linux-image-6.1.0-9-amd64 (= 6.1.1)",
                "",
            ),
            pkg(
                "linux-image-6.1.0-9-amd64",
                "6.1.1",
                "kmod, linux-base (>= 4.3~), initramfs-tools | linux-initramfs-tool",
                "",
            ),
        ]);
        assert_eq!(
            a.resolve_kernel("linux-image-amd64").unwrap().name,
            "linux-image-6.1.0-9-amd64"
        );
    }

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "ab"), 2);
    }
}
