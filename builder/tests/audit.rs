//! The secret audit against real keys and real Debian trees.
//!
//! Every key here is generated at test time by the real tools (`ssh-keygen`,
//! `openssl`, `puttygen`); tokens are random but well-formed. Each planted
//! secret must be found, with the right rule and path, as a plain file, in
//! the middle of binary data, gzip'd, inside a cpio archive and inside a
//! plain + zstd concatenated initramfs; the secret text must never appear in
//! the rendered or JSON report. Stock Debian trees (kernel, busybox, OpenSSH,
//! libssl: full of PEM literals and test data) must give zero findings.

#[path = "common/run.rs"]
mod common_run;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ipa_build::audit::{self, AuditReport, Severity};
use ipa_build::config::profile::AuditAllow;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &str, args: &[&str], dir: &Path) {
    common_run::checked(Command::new(cmd).args(args).current_dir(dir));
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn chars(&mut self, n: usize, alphabet: &[u8]) -> String {
        (0..n)
            .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize] as char)
            .collect()
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// One planted secret: where, which rule must fire, a piece of the secret
/// that must never be printed, and whether it is a content rule (found
/// inside binaries too) or a name rule.
struct Plant {
    path: String,
    rule: &'static str,
    data: Vec<u8>,
    secret: String,
    content: bool,
}

impl Plant {
    fn new(
        path: &str,
        rule: &'static str,
        data: impl Into<Vec<u8>>,
        secret: impl Into<String>,
        content: bool,
    ) -> Plant {
        Plant {
            path: path.to_string(),
            rule,
            data: data.into(),
            secret: secret.into(),
            content,
        }
    }
}

/// A distinctive piece of a PEM body (its longest base64 line).
fn pem_secret(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && !l.contains(':'))
        .max_by_key(|l| l.len())
        .unwrap()
        .to_string()
}

/// Secrets planted as text: `(path, rule, content rule?, template)`. Each
/// `{alphabet:n}` in the template becomes `n` random characters of that
/// alphabet (see `fill`); the last one is the secret that must never be
/// printed, the others are the non-secret parts a token's format needs
/// (an ID, a team number).
const TOKENS: &[(&str, &str, bool, &str)] = &[
    (
        "/root/.netrc",
        "netrc",
        false,
        "machine files.example.org\n  login deploy\n  password {alnum:20}\n",
    ),
    (
        "/root/.git-credentials",
        "git-credentials",
        false,
        "https://deploy:{alnum:40}@git.example.org\n",
    ),
    (
        "/root/.aws/config",
        "aws-access-key-id",
        true,
        "[default]\naws_access_key_id = AKIA{upper32:16}\n",
    ),
    (
        "/root/.aws/credentials",
        "aws-secret-key",
        true,
        "[default]\naws_secret_access_key = {base64:40}\n",
    ),
    (
        "/etc/openstack/clouds.yaml",
        "openstack-clouds-yaml",
        false,
        "clouds:\n  prod:\n    auth:\n      auth_url: https://keystone.example.org/v3\n      username: admin\n      password: \"{alnum:18}\"\n      project_name: admin\n",
    ),
    (
        "/root/.config/openstack/clouds.yaml",
        "openstack-clouds-yaml",
        false,
        "clouds:\n  ci:\n    auth_type: v3applicationcredential\n    auth:\n      application_credential_id: {hex:32}\n      application_credential_secret: {alnum:32}\n",
    ),
    (
        "/opt/ci/gh.sh",
        "github-token",
        true,
        "export GH_TOKEN=ghp_{alnum:36}\n",
    ),
    (
        "/opt/ci/ghf.txt",
        "github-token",
        true,
        "github_pat_{alnum:22}_{alnum:59}\n",
    ),
    (
        "/opt/ci/gl.sh",
        "gitlab-token",
        true,
        "GITLAB_TOKEN='glpat-{alnum:20}'\n",
    ),
    (
        "/opt/ci/slack.txt",
        "slack-token",
        true,
        "token: xoxb-{digits:12}-{digits:13}-{alnum:24}\n",
    ),
    (
        "/opt/ci/hook.txt",
        "slack-token",
        true,
        "url=https://hooks.slack.com/services/T{upper32:10}/B{upper32:10}/{alnum:24}\n",
    ),
    (
        "/etc/myapp/db.conf",
        "generic-secret",
        false,
        "[db]\nhost = db\ndb_password = {alnum:22}\n",
    ),
    // What the scrub stage removes, left in an image that did not go through
    // it (issue 13): a history with a token typed into it, a baked machine id
    // (and a random seed, planted in `corpus`).
    (
        "/root/.bash_history",
        "scrub-leftover",
        false,
        "ls -l\ncurl -H 'X-Auth-Token: {alnum:32}' https://ironic.example.org/v1/nodes\n",
    ),
    ("/etc/machine-id", "scrub-leftover", false, "{hex:32}\n"),
];

/// Renders a `TOKENS` template: returns the text and its last random field
/// (the secret).
fn fill(template: &str, rng: &mut Rng) -> (String, String) {
    let mut text = String::new();
    let mut secret = None;
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}').expect("unclosed {");
        let (name, n) = rest[open + 1..close]
            .split_once(':')
            .expect("a field is {alphabet:n}");
        let alphabet: &[u8] = match name {
            "alnum" => ALNUM,
            "upper32" => UPPER32,
            "digits" => b"0123456789",
            "hex" => b"0123456789abcdef",
            "base64" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            other => panic!("unknown alphabet {other:?} in {template:?}"),
        };
        let field = rng.chars(n.parse().unwrap(), alphabet);
        text.push_str(&rest[..open]);
        text.push_str(&field);
        secret = Some(field);
        rest = &rest[close + 1..];
    }
    text.push_str(rest);
    (text, secret.expect("a template has a secret field"))
}

fn corpus(work: &Path) -> Vec<Plant> {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut p = Vec::new();
    let read = |f: &str| std::fs::read_to_string(work.join(f)).unwrap();
    let mut key = |path: &str, rule: &'static str, file: &str| {
        let text = read(file);
        p.push(Plant {
            path: path.into(),
            rule,
            secret: pem_secret(&text),
            data: text.into_bytes(),
            content: true,
        });
    };

    // OpenSSH keys.
    for (t, extra) in [
        ("rsa", vec!["-b", "2048"]),
        ("ecdsa", vec![]),
        ("ed25519", vec![]),
        ("dsa", vec![]),
    ] {
        let f = format!("id_{t}");
        let mut args = vec!["-q", "-t", t, "-N", "", "-C", "", "-f", &f];
        args.extend(extra);
        run("ssh-keygen", &args, work);
    }
    run(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "correct horse", "-f", "id_enc"],
        work,
    );
    for t in ["rsa", "ecdsa", "ed25519", "dsa", "enc"] {
        key(
            &format!("/root/.ssh/id_{t}"),
            "openssh-private-key",
            &format!("id_{t}"),
        );
    }
    // OpenSSL PEM: PKCS#1, legacy-encrypted PKCS#1, PKCS#8, encrypted PKCS#8, EC, DSA.
    run(
        "openssl",
        &["genrsa", "-traditional", "-out", "rsa1.pem", "2048"],
        work,
    );
    run(
        "openssl",
        &[
            "genrsa",
            "-traditional",
            "-aes128",
            "-passout",
            "pass:x",
            "-out",
            "rsa1enc.pem",
            "2048",
        ],
        work,
    );
    run(
        "openssl",
        &["genpkey", "-algorithm", "RSA", "-out", "p8.pem"],
        work,
    );
    run(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "ed25519",
            "-aes256",
            "-pass",
            "pass:x",
            "-out",
            "p8enc.pem",
        ],
        work,
    );
    run(
        "openssl",
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ec.pem",
        ],
        work,
    );
    run(
        "openssl",
        &["dsaparam", "-genkey", "-noout", "-out", "dsa8.pem", "1024"],
        work,
    );
    run(
        "openssl",
        &["pkey", "-in", "dsa8.pem", "-traditional", "-out", "dsa.pem"],
        work,
    );
    key("/etc/ssl/private/rsa1.pem", "private-key", "rsa1.pem");
    key("/etc/ssl/private/rsa1enc.pem", "private-key", "rsa1enc.pem");
    key("/opt/app/p8.key", "private-key", "p8.pem");
    key("/opt/app/p8enc.key", "private-key", "p8enc.pem");
    key("/opt/app/ec.key", "private-key", "ec.pem");
    key("/opt/app/dsa.key", "private-key", "dsa.pem");
    // CRLF line endings (a key copied from Windows).
    let crlf = read("ec.pem").replace('\n', "\r\n");
    p.push(Plant {
        path: "/opt/app/ec-crlf.key".into(),
        rule: "private-key",
        secret: pem_secret(&crlf),
        data: crlf.into_bytes(),
        content: true,
    });

    // PKCS#12 from a self-signed certificate and its key.
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "cert.key",
            "-out",
            "cert.pem",
            "-subj",
            "/CN=audit-test",
            "-days",
            "2",
        ],
        work,
    );
    run(
        "openssl",
        &[
            "pkcs12", "-export", "-in", "cert.pem", "-inkey", "cert.key", "-out", "ks.p12",
            "-passout", "pass:x",
        ],
        work,
    );
    let p12 = std::fs::read(work.join("ks.p12")).unwrap();
    // The secret of a PFX is binary; check the preview does not hex/base64 it.
    let p12_secret = STANDARD.encode(&p12[p12.len() / 2..p12.len() / 2 + 24]);
    p.push(Plant::new(
        "/opt/app/keystore.bin",
        "pkcs12-keystore",
        p12,
        p12_secret,
        true,
    ));

    // PuTTY keys, v3 and v2.
    if have("puttygen") {
        run(
            "puttygen",
            &["id_rsa", "-O", "private", "-o", "k3.ppk"],
            work,
        );
        run(
            "puttygen",
            &[
                "id_ed25519",
                "-O",
                "private",
                "--ppk-param",
                "version=2",
                "-o",
                "k2.ppk",
            ],
            work,
        );
    } else {
        let mut r = Rng(7);
        for (f, v) in [("k3.ppk", 3), ("k2.ppk", 2)] {
            let text = format!(
                "PuTTY-User-Key-File-{v}: ssh-ed25519\nEncryption: none\nComment: test\nPublic-Lines: 2\n{}\n{}\nPrivate-Lines: 1\n{}\nPrivate-MAC: {}\n",
                STANDARD.encode(r.bytes(48)),
                STANDARD.encode(r.bytes(3)),
                STANDARD.encode(r.bytes(48)),
                hex::encode(r.bytes(32))
            );
            std::fs::write(work.join(f), text).unwrap();
        }
    }
    for f in ["k3.ppk", "k2.ppk"] {
        let text = read(f);
        let private = text
            .split("Private-Lines:")
            .nth(1)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .to_string();
        p.push(Plant {
            path: format!("/home/u/{f}"),
            rule: "putty-private-key",
            secret: private,
            data: text.into_bytes(),
            content: true,
        });
    }

    // Host keys by name (the content rule fires too; the name rule must as well).
    let host = read("id_ed25519");
    p.push(Plant {
        path: "/etc/ssh/ssh_host_ed25519_key".into(),
        rule: "ssh-host-key",
        secret: pem_secret(&host),
        data: host.into_bytes(),
        content: false,
    });
    p.push(Plant::new(
        "/etc/dropbear/dropbear_rsa_host_key",
        "ssh-host-key",
        rng.bytes(800),
        String::new(),
        false,
    ));

    // shadow, for root and any other user, locked or not.
    let out = Command::new("openssl")
        .args(["passwd", "-6", "-salt", "aUd1tSaLt", "hunter2"])
        .output()
        .unwrap();
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let secret = hash.rsplit('$').next().unwrap().to_string();
    let shadow = format!(
        "root:{hash}:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nnobody:!:19000::::::\n"
    );
    let gshadow = format!("rescue:!{hash}::\n");
    for (path, text) in [("/etc/shadow", shadow), ("/etc/gshadow-", gshadow)] {
        p.push(Plant::new(path, "shadow-hash", text, secret.clone(), false));
    }

    let pubkey = read("id_ed25519.pub");
    p.push(Plant::new(
        "/home/rescue/.ssh/authorized_keys",
        "authorized-keys",
        pubkey,
        String::new(),
        false,
    ));

    let dpw = rng.chars(24, ALNUM);
    let auth = STANDARD.encode(format!("robot:{dpw}"));
    p.push(Plant::new("/root/.docker/config.json", "docker-config-auth", format!("{{\n  \"auths\": {{\n    \"registry.example.org\": {{\n      \"auth\": \"{auth}\"\n    }}\n  }}\n}}\n").into_bytes(), auth, true));

    let p8 = read("p8.pem");
    let gcp = format!(
        "{{\n  \"type\": \"service_account\",\n  \"project_id\": \"p\",\n  \"private_key_id\": \"{}\",\n  \"private_key\": \"{}\",\n  \"client_email\": \"sa@p.iam.gserviceaccount.com\"\n}}\n",
        hex::encode(rng.bytes(20)),
        p8.replace('\n', "\\n")
    );
    p.push(Plant::new(
        "/opt/gcp/sa.json",
        "gcp-service-account",
        gcp,
        pem_secret(&p8),
        true,
    ));

    let azk = STANDARD.encode(rng.bytes(64));
    p.push(Plant::new("/opt/app/azure.env", "azure-connection-string", format!("AZURE_STORAGE=DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={azk};EndpointSuffix=core.windows.net\n").into_bytes(), azk, true));

    let ck = STANDARD.encode(read("ec.pem"));
    let kt = rng.chars(48, ALNUM);
    let kube = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://10.0.0.1:6443\n  name: c\nusers:\n- name: admin\n  user:\n    client-key-data: {ck}\n- name: bot\n  user:\n    token: {kt}\n"
    );
    p.push(Plant::new(
        "/root/.kube/config",
        "kubeconfig-client-key",
        kube.clone(),
        &ck[40..80],
        true,
    ));
    p.push(Plant::new(
        "/root/.kube/config",
        "kubeconfig-token",
        kube,
        kt,
        false,
    ));

    let jwt = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(br#"{"sub":"ironic","exp":4102444800}"#),
        URL_SAFE_NO_PAD.encode(rng.bytes(32))
    );
    p.push(Plant {
        path: "/opt/app/token.txt".into(),
        rule: "jwt",
        secret: jwt.rsplit('.').next().unwrap().to_string(),
        data: format!("Authorization: Bearer {jwt}\n").into_bytes(),
        content: true,
    });

    for &(path, rule, content, template) in TOKENS {
        let (text, secret) = fill(template, &mut rng);
        p.push(Plant::new(path, rule, text, secret, content));
    }
    // A random seed baked into the image (issue 13, like the history and
    // machine id in `TOKENS`).
    let seed = rng.bytes(512);
    let seed_hex = hex::encode(&seed[..8]);
    p.push(Plant::new(
        "/var/lib/systemd/random-seed",
        "scrub-leftover",
        seed,
        seed_hex,
        false,
    ));
    p
}

/// Files that look like secrets to a naive scanner and must not be reported.
fn decoys(root: &Path) {
    let w = |p: &str, d: &[u8]| {
        let f = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, d).unwrap();
    };
    w("/usr/lib/libfake.so", b"\x7fELF\0\0-----BEGIN RSA PRIVATE KEY-----\0-----END RSA PRIVATE KEY-----\0%s\0-----BEGIN %s-----\n");
    w("/etc/app/example.conf", b"# password = Zq8kd02LmPx1vR\npassword = changeme\nsecret = ${APP_SECRET}\ntoken: <your token here>\n");
    w("/usr/share/doc/aws.txt", b"aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n");
    w(
        "/etc/shadow.dpkg-dist",
        b"root:*:19000:0:99999:7:::\nrescue:!:19000::::::\nnopw::19000::::::\n",
    );
    w(
        "/usr/share/doc/notes.txt",
        b"root:$6$saltsalt$notashadowfile:0:0\n",
    );
    w(
        "/etc/ssh/ssh_host_ed25519_key.pub",
        b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIrandomrandomrandomrandom test\n",
    );
    // systemd's "no id yet": what the scrub leaves, not a leftover.
    w("/var/lib/dbus/machine-id", b"uninitialized\n");
    w("/etc/openstack/clouds-noauth.yaml", b"clouds:\n  local:\n    auth_type: none\n    baremetal_endpoint_override: http://127.0.0.1:6385\n");
}

fn place(root: &Path, path: &str, data: &[u8]) {
    let f = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    // Two plants may share a path (the kubeconfig): same bytes.
    std::fs::write(f, data).unwrap();
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Builds the planted tree: plain files, gzip'd copies, and content secrets
/// embedded in random binary data.
fn planted_tree(work: &Path, plants: &[Plant]) -> PathBuf {
    let root = work.join("tree");
    let mut rng = Rng(42);
    for (i, p) in plants.iter().enumerate() {
        place(&root, &p.path, &p.data);
        place(&root, &format!("{}.gz", p.path), &gzip(&p.data));
        if p.content {
            let mut bin = b"\x7fELF\x02\x01\x01\0".to_vec();
            bin.extend(rng.bytes(4096));
            bin.push(0);
            bin.extend(&p.data);
            bin.push(0);
            bin.extend(rng.bytes(4096));
            place(&root, &format!("/usr/lib/planted/bin{i:02}.so"), &bin);
        }
    }
    decoys(&root);
    root
}

/// Generates the corpus under `work` and writes its planted tree: what
/// every test of the planted secrets starts from.
fn planted(work: &Path) -> (Vec<Plant>, PathBuf) {
    need_tools();
    let plants = corpus(work);
    let root = planted_tree(work, &plants);
    (plants, root)
}

/// Where each plant must be reported in a tree built by `planted_tree`,
/// with `prefix` before each path (for archives inside ISOs).
fn expected(plants: &[Plant], prefix: &str) -> BTreeSet<(String, String)> {
    let mut e = BTreeSet::new();
    for (i, p) in plants.iter().enumerate() {
        e.insert((format!("{prefix}{}", p.path), p.rule.to_string()));
        e.insert((format!("{prefix}{}.gz", p.path), p.rule.to_string()));
        if p.content {
            e.insert((
                format!("{prefix}/usr/lib/planted/bin{i:02}.so"),
                p.rule.to_string(),
            ));
        }
    }
    e
}

fn check(report: &AuditReport, plants: &[Plant], want: &BTreeSet<(String, String)>) {
    let got: BTreeSet<(String, String)> = report
        .findings
        .iter()
        .map(|f| (f.path.clone(), f.rule.to_string()))
        .collect();
    let missing: Vec<_> = want.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "missed {} planted secrets: {missing:#?}\n{}",
        missing.len(),
        report.render()
    );
    // Everything reported is a planted file (no decoy, no stray rule on a decoy).
    let planted_paths: BTreeSet<&String> = want.iter().map(|(p, _)| p).collect();
    let stray: Vec<_> = got
        .iter()
        .filter(|(p, _)| !planted_paths.contains(p))
        .collect();
    assert!(stray.is_empty(), "false positives: {stray:#?}");
    let text = report.render();
    let json = serde_json::to_string(report).unwrap();
    for p in plants.iter().filter(|p| p.secret.len() >= 8) {
        assert!(
            !text.contains(&p.secret),
            "rendered report leaks the {} secret",
            p.rule
        );
        assert!(
            !json.contains(&p.secret),
            "JSON report leaks the {} secret",
            p.rule
        );
    }
    for f in &report.findings {
        let want_sev = if f.rule == "authorized-keys" {
            Severity::Warning
        } else {
            Severity::Error
        };
        assert_eq!(f.severity, want_sev, "{f:?}");
    }
}

fn need_tools() -> bool {
    for t in ["ssh-keygen", "openssl", "cpio", "zstd"] {
        assert!(
            have(t),
            "{t} is required (apt-get install openssh-client openssl cpio zstd)"
        );
    }
    true
}

fn cpio_of(root: &Path, out: &Path) {
    let list = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . | LC_ALL=C sort | cpio -o -H newc --quiet > '{}'",
            root.display(),
            out.display()
        ))
        .status()
        .unwrap();
    assert!(list.success());
}

#[test]
fn every_planted_secret_is_found_in_a_directory() {
    let work = tempfile::tempdir().unwrap();
    let (plants, root) = planted(work.path());
    let report = audit::audit_dir(&root, &[], 2).unwrap();
    check(&report, &plants, &expected(&plants, ""));
    // Every rule of the rule table is exercised by the corpus.
    let rules: BTreeSet<&str> = report.findings.iter().map(|f| f.rule).collect();
    for (r, _) in audit::rules::RULES {
        assert!(rules.contains(r), "rule {r} has no planted case");
    }
    assert!(report.errors().count() > 0);
}

#[test]
fn cpio_and_concatenated_plain_plus_zstd_initramfs() {
    let work = tempfile::tempdir().unwrap();
    let (plants, root) = planted(work.path());
    let want = expected(&plants, "");

    let plain = work.path().join("plain.cpio");
    cpio_of(&root, &plain);
    let report = audit::audit_path(&plain, &[], 2).unwrap();
    check(&report, &plants, &want);

    // Split the tree in two: an early plain archive with /etc, then a zstd
    // archive with the rest, concatenated as the kernel accepts.
    let early = work.path().join("early");
    std::fs::create_dir_all(&early).unwrap();
    std::fs::rename(root.join("etc"), early.join("etc")).unwrap();
    let (a, b) = (work.path().join("a.cpio"), work.path().join("b.cpio"));
    cpio_of(&early, &a);
    cpio_of(&root, &b);
    run(
        "zstd",
        &["-q", "-19", "b.cpio", "-o", "b.cpio.zst"],
        work.path(),
    );
    let mut img = std::fs::read(&a).unwrap();
    img.resize(img.len().div_ceil(512) * 512, 0);
    img.extend(std::fs::read(work.path().join("b.cpio.zst")).unwrap());
    let initrd = work.path().join("initrd.img");
    std::fs::write(&initrd, &img).unwrap();
    let report = audit::audit_path(&initrd, &[], 2).unwrap();
    check(&report, &plants, &want);

    // gzip and xz main archives too.
    for (tool, ext) in [("gzip", "gz"), ("xz", "xz")] {
        if !have(tool) {
            continue;
        }
        let args: &[&str] = if tool == "xz" {
            &["-k", "-f", "--check=crc32", "b.cpio"]
        } else {
            &["-k", "-f", "b.cpio"]
        };
        run(tool, args, work.path());
        let mut img = std::fs::read(&a).unwrap();
        img.extend(std::fs::read(work.path().join(format!("b.cpio.{ext}"))).unwrap());
        std::fs::write(&initrd, &img).unwrap();
        let report = audit::audit_path(&initrd, &[], 2).unwrap();
        check(&report, &plants, &want);
    }
}

#[test]
fn iso_with_an_initramfs_is_looked_into() {
    if !have("xorriso") {
        eprintln!("skipping: xorriso not installed");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (plants, root) = planted(work.path());
    let iso_tree = work.path().join("iso");
    std::fs::create_dir_all(iso_tree.join("boot")).unwrap();
    cpio_of(&root, &work.path().join("x.cpio"));
    run(
        "zstd",
        &[
            "-q",
            "x.cpio",
            "-o",
            "iso/boot/initramfs-with-a-long-name.img",
        ],
        work.path(),
    );
    std::fs::write(iso_tree.join("boot/grub.cfg"), "linux /boot/vmlinuz\n").unwrap();
    std::fs::write(iso_tree.join("boot/root.key"), &plants[0].data).unwrap();
    run(
        "xorriso",
        &["-as", "mkisofs", "-quiet", "-R", "-J", "-o", "t.iso", "iso"],
        work.path(),
    );
    let report = audit::audit_path(&work.path().join("t.iso"), &[], 2).unwrap();
    let mut want = expected(&plants, "/boot/initramfs-with-a-long-name.img!");
    want.insert(("/boot/root.key".into(), plants[0].rule.into()));
    check(&report, &plants, &want);
}

#[test]
fn allow_entries_suppress_reviewed_findings_and_stale_ones_are_listed() {
    need_tools();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("t");
    let pubkey =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOr9yK2r3mQp6QkE4l2Zz8v1Xc0dYb7nWj5sT3uH8aFq ops\n";
    place(&root, "/root/.ssh/authorized_keys", pubkey.as_bytes());
    place(
        &root,
        "/etc/shadow",
        b"root:$6$abcdefgh$0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ:1::::::\n",
    );
    let allow = vec![
        AuditAllow {
            path: "/root/.ssh/authorized_keys".into(),
            rule: "authorized-keys".into(),
            reason: "operator key, by design".into(),
        },
        AuditAllow {
            path: "/etc/*".into(),
            rule: "netrc".into(),
            reason: "stale".into(),
        },
    ];
    let report = audit::audit_dir(&root, &allow, 2).unwrap();
    assert_eq!(report.allowed.len(), 1, "{}", report.render());
    assert_eq!(report.allowed[0].1, "operator key, by design");
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].rule, "shadow-hash");
    assert_eq!(report.findings[0].path, "/etc/shadow");
    assert_eq!(report.findings[0].offset, 5);
    assert_eq!(report.unused_allow.len(), 1);
    assert!(report.render().contains("matched nothing"));

    let bad = vec![AuditAllow {
        path: "/x".into(),
        rule: "private_key".into(),
        reason: "r".into(),
    }];
    let err = audit::audit_dir(&root, &bad, 1).unwrap_err().to_string();
    assert!(
        err.contains("private_key") && err.contains("known rules"),
        "{err}"
    );
    let noreason = vec![AuditAllow {
        path: "/x".into(),
        rule: "netrc".into(),
        reason: " ".into(),
    }];
    assert!(
        audit::audit_dir(&root, &noreason, 1)
            .unwrap_err()
            .to_string()
            .contains("reason")
    );
}

/// `ipa-build audit`'s exit status for these arguments.
fn run_cli(args: &ipa_build::cmd::audit::Args) -> u8 {
    ipa_build::cmd::exit_code(&ipa_build::cmd::audit::run(args))
}

#[test]
fn cli_exit_codes_and_allow_file() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("t");
    place(&root, "/etc/hostname", b"ipa\n");
    let args = |p: &Path| ipa_build::cmd::audit::Args {
        path: p.to_path_buf(),
        json: true,
        allow_file: None,
        strict: false,
        threads: Some(1),
        list_rules: false,
    };
    assert_eq!(run_cli(&args(&root)), 0);
    place(
        &root,
        "/root/.netrc",
        b"machine h login u password Zq8kd02LmPx1vR\n",
    );
    assert_eq!(run_cli(&args(&root)), 1);
    assert_eq!(run_cli(&args(&work.path().join("missing"))), 2);
    let junk = work.path().join("junk.cpio");
    std::fs::write(&junk, b"070701garbage").unwrap();
    assert_eq!(run_cli(&args(&junk)), 2);

    let prof = work.path().join("p.yaml");
    std::fs::write(&prof, "name: x\naudit:\n  allow:\n    - path: /root/.netrc\n      rule: netrc\n      reason: test fixture\n").unwrap();
    let mut a = args(&root);
    a.allow_file = Some(prof);
    assert_eq!(run_cli(&a), 0);
}

/// Debian packages unpacked once into `target/test-data/audit-clean`.
fn debian_tree() -> PathBuf {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-data");
    let tree = data.join("audit-clean");
    let stamp = tree.join(".unpacked");
    if stamp.exists() {
        return tree;
    }
    std::fs::create_dir_all(&data).unwrap();
    let pkgs = [
        "busybox-static",
        "linux-image-amd64",
        "openssh-server",
        "openssh-client",
        "libssl3",
    ];
    for pkg in pkgs {
        // linux-image-amd64 is a metapackage: unpack the versioned image it depends on.
        let name = if pkg == "linux-image-amd64" {
            let out = Command::new("apt-cache")
                .args(["depends", pkg])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("Depends: ")
                        .filter(|d| d.starts_with("linux-image-"))
                        .map(str::to_string)
                })
                .expect("resolving linux-image-amd64's kernel package")
        } else {
            pkg.to_string()
        };
        let find = || {
            std::fs::read_dir(&data)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(&format!("{name}_"))
                        && p.extension().is_some_and(|e| e == "deb")
                })
        };
        let deb = match find() {
            Some(d) => d,
            None => {
                run("apt-get", &["download", &name], &data);
                find().unwrap()
            }
        };
        run(
            "dpkg-deb",
            &["-x", deb.to_str().unwrap(), tree.to_str().unwrap()],
            &data,
        );
    }
    std::fs::write(&stamp, b"").unwrap();
    tree
}

#[test]
fn stock_debian_trees_are_clean() {
    let tree = debian_tree();
    assert!(
        tree.join("usr/lib/x86_64-linux-gnu").exists()
            || tree.join("lib/x86_64-linux-gnu").exists()
    );
    let t = std::time::Instant::now();
    let report = audit::audit_dir(
        &tree,
        &[],
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    )
    .unwrap();
    eprintln!("{}in {:.2?}", report.render(), t.elapsed());
    assert!(
        report.files_scanned > 3000,
        "{} files",
        report.files_scanned
    );
    assert!(report.findings.is_empty(), "{}", report.render());
}

/// Writes the planted corpus and its answer key (`expected.tsv`: path, rule)
/// for `benches/audit.sh` when `IPA_AUDIT_EXPORT=DIR` is set (DIR must be
/// empty or absent); either way, audits it against that key.
#[test]
fn export_corpus() {
    let tmp = tempfile::tempdir().unwrap();
    let work = std::env::var_os("IPA_AUDIT_EXPORT")
        .map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);
    std::fs::create_dir_all(&work).unwrap();
    assert!(
        std::fs::read_dir(&work).unwrap().next().is_none(),
        "{} must be empty",
        work.display()
    );
    let (plants, root) = planted(&work);
    let want = expected(&plants, "");
    let key: String = want.iter().map(|(p, r)| format!("{p}\t{r}\n")).collect();
    std::fs::write(work.join("expected.tsv"), key).unwrap();
    let report = audit::audit_dir(&root, &[], 2).unwrap();
    check(&report, &plants, &want);
}
