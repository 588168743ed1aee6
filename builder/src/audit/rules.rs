//! The rule set: what a secret looks like.
//!
//! Two kinds of rules, because secrets come in two kinds:
//!
//! * **Content rules** find a secret wherever its bytes are, in text or in the
//!   middle of a binary: private keys, keystores, cloud and forge tokens. Each
//!   has literal *anchors* (`-----BEGIN `, `AKIA`, `ghp_`, ...) searched for all
//!   at once with one Aho-Corasick automaton (a SIMD prefilter, so scanning
//!   400 MB of kernel modules costs well under a second per core); only at an
//!   anchor does the rule's validator run.
//! * **File rules** apply to files by name, because the same text is harmless
//!   elsewhere: `user:$6$...` is a secret in `/etc/shadow`, not in a man page.
//!
//! Validators are strict on purpose. A stock Debian tree is full of things
//! that *look* like secrets: `libcrypto` carries `-----BEGIN RSA PRIVATE
//! KEY-----` as a string literal, libraries carry test vectors, licences and
//! docs carry `password=` examples. A finding fails the build, so a false
//! positive teaches people to add blanket exceptions; every validator therefore
//! checks the structure (PEM body and END line, decoded DER, the OpenSSH magic,
//! token length, boundaries and entropy) before it reports.
//!
//! Previews never contain the secret: only the kind of thing found, its size,
//! and non-secret context such as a PEM label or a user name.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use memchr::memmem;

use super::Severity;

/// One match of one rule in one blob of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub rule: &'static str,
    pub severity: Severity,
    /// Byte offset of the start of the secret.
    pub offset: usize,
    /// Byte offset just past the secret (used to avoid reporting it twice).
    pub end: usize,
    /// Redacted description; never the secret itself.
    pub preview: String,
}

/// Every rule name, with what it finds; used by `--list-rules`, the docs and
/// the allow-list validation.
pub const RULES: &[(&str, &str)] = &[
    (
        "private-key",
        "PEM private key (PKCS#1 RSA/DSA/EC, PKCS#8, encrypted PKCS#8, PGP) with a valid body",
    ),
    (
        "openssh-private-key",
        "OpenSSH private key (openssh-key-v1), encrypted or not",
    ),
    ("putty-private-key", "PuTTY .ppk private key, v2 or v3"),
    (
        "scrub-leftover",
        "what the build's scrub removes: a shell or tool history, a baked machine-id, a random seed (images not built by ipa-build)",
    ),
    (
        "pkcs12-keystore",
        "PKCS#12 / PFX keystore holding a key, or a Java keystore with a private key entry",
    ),
    (
        "ssh-host-key",
        "SSH host key by file name (ssh_host_*_key, dropbear host keys)",
    ),
    (
        "shadow-hash",
        "password hash in a shadow/gshadow/passwd file",
    ),
    (
        "authorized-keys",
        "authorized_keys file (warning: someone can log in)",
    ),
    ("netrc", ".netrc with a password"),
    ("git-credentials", ".git-credentials with a credential URL"),
    (
        "docker-config-auth",
        "Docker config.json \"auth\"/\"identitytoken\" entry",
    ),
    ("aws-access-key-id", "AWS access key id (AKIA/ASIA...)"),
    ("aws-secret-key", "AWS secret access key assignment"),
    (
        "gcp-service-account",
        "Google Cloud service-account JSON with a private key",
    ),
    (
        "azure-connection-string",
        "Azure storage/service-bus connection string with a key",
    ),
    (
        "openstack-clouds-yaml",
        "OpenStack clouds.yaml/secure.yaml password or application credential secret",
    ),
    ("kubeconfig-client-key", "kubeconfig client-key-data"),
    ("kubeconfig-token", "kubeconfig user token or password"),
    ("jwt", "JSON Web Token"),
    (
        "github-token",
        "GitHub token (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_)",
    ),
    (
        "gitlab-token",
        "GitLab token (glpat-, gldt-, glrt-, glptt-, GR1348941)",
    ),
    (
        "slack-token",
        "Slack token (xoxb-, xoxp-, ...) or incoming webhook URL",
    ),
    (
        "generic-secret",
        "password=/secret=/token= in a config file with a high-entropy value",
    ),
];

// ---------------------------------------------------------------------------
// Content rules
// ---------------------------------------------------------------------------

/// What a validator finds: start, end, rule name, preview.
type Found = (usize, usize, &'static str, String);

/// A validator: the data, where an anchor matched and the anchor's length.
type Check = fn(&[u8], usize, usize) -> Option<Found>;

struct ContentRule {
    anchors: &'static [&'static [u8]],
    check: Check,
}

/// One row of [`CONTENT_RULES`].
const fn rule(anchors: &'static [&'static [u8]], check: Check) -> ContentRule {
    ContentRule { anchors, check }
}

const CONTENT_RULES: &[ContentRule] = &[
    rule(&[b"-----BEGIN "], pem),
    rule(&[b"PuTTY-User-Key-File-"], putty),
    rule(&[b"\x02\x01\x03\x30"], pkcs12),
    rule(&[b"AKIA", b"ASIA", b"ABIA", b"ACCA"], aws_key_id),
    rule(
        &[
            b"aws_secret_access_key",
            b"AWS_SECRET_ACCESS_KEY",
            b"SecretAccessKey",
            b"secretAccessKey",
            b"secret_access_key",
            b"aws_secret_key",
        ],
        aws_secret,
    ),
    rule(&[b"service_account"], gcp),
    rule(&[b"AccountKey=", b"SharedAccessKey="], azure),
    rule(&[b"client-key-data"], kube_client_key),
    rule(&[b"eyJ"], jwt),
    rule(
        &[b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"github_pat_"],
        github,
    ),
    rule(
        &[b"glpat-", b"gldt-", b"glrt-", b"glptt-", b"GR1348941"],
        gitlab,
    ),
    rule(
        &[
            b"xoxb-",
            b"xoxp-",
            b"xoxa-",
            b"xoxr-",
            b"xoxs-",
            b"xoxe-",
            b"hooks.slack.com/services/",
        ],
        slack,
    ),
    rule(&[b"\"auth\"", b"\"identitytoken\""], docker_auth),
];

struct Automaton {
    ac: AhoCorasick,
    /// Pattern id → (rule index, anchor length).
    owner: Vec<(usize, usize)>,
}

static AUTOMATON: LazyLock<Option<Automaton>> = LazyLock::new(|| {
    let mut pats: Vec<&[u8]> = Vec::new();
    let mut owner = Vec::new();
    for (i, r) in CONTENT_RULES.iter().enumerate() {
        for a in r.anchors {
            pats.push(a);
            owner.push((i, a.len()));
        }
    }
    // Building from a constant pattern list cannot fail in practice; if it
    // ever did, `scan_content` reports it rather than silently passing.
    let ac = AhoCorasickBuilder::new()
        .match_kind(MatchKind::Standard)
        .build(&pats)
        .ok()?;
    Some(Automaton { ac, owner })
});

/// Runs every content rule over `data`. Hits are in offset order; a rule does
/// not report a second hit that starts inside its previous one.
pub fn scan_content(data: &[u8]) -> Result<Vec<Hit>, String> {
    let Some(auto) = AUTOMATON.as_ref() else {
        return Err("internal error: the audit's pattern automaton could not be built".into());
    };
    let mut hits: Vec<Hit> = Vec::new();
    let mut last_end = vec![0usize; CONTENT_RULES.len()];
    for m in auto.ac.find_overlapping_iter(data) {
        let (ri, alen) = auto.owner[m.pattern().as_usize()];
        if m.start() < last_end[ri] {
            continue;
        }
        if let Some((start, end, rule, preview)) = (CONTENT_RULES[ri].check)(data, m.start(), alen)
        {
            last_end[ri] = end.max(m.end());
            hits.push(Hit {
                rule,
                severity: Severity::Error,
                offset: start,
                end,
                preview,
            });
        }
    }
    hits.sort_by_key(|h| h.offset);
    Ok(hits)
}

// ----- helpers --------------------------------------------------------------

/// A decoder for `alphabet` that takes padding or none and trailing bits.
fn lenient_engine(alphabet: &base64::alphabet::Alphabet) -> GeneralPurpose {
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    )
}

fn b64_engine() -> GeneralPurpose {
    lenient_engine(&base64::alphabet::STANDARD)
}

fn b64url_engine() -> GeneralPurpose {
    lenient_engine(&base64::alphabet::URL_SAFE)
}

fn is_b64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
}

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Whether the byte before `at` continues a word, so a token prefix found at
/// `at` is only the middle of some longer identifier.
fn inside_word(data: &[u8], at: usize) -> bool {
    at > 0 && is_word(data[at - 1])
}

/// The finding for a token made of a public prefix (`ghp_`, `glpat-`,
/// `xoxb-`) at `at..v` and a secret value at `v..end`: the preview keeps the
/// prefix, which says what kind of token it is, and only the value's length.
fn prefixed_token(
    data: &[u8],
    at: usize,
    v: usize,
    end: usize,
    rule: &'static str,
) -> Option<Found> {
    let prefix = String::from_utf8_lossy(&data[at..v]);
    Some((
        at,
        end,
        rule,
        format!("{prefix}[REDACTED: {} chars]", end - v),
    ))
}

/// Index of the first byte at or after `from` (and before `limit`) not matching `pred`.
fn span(data: &[u8], from: usize, limit: usize, pred: impl Fn(u8) -> bool) -> usize {
    let limit = limit.min(data.len());
    let mut i = from;
    while i < limit && pred(data[i]) {
        i += 1;
    }
    i
}

/// Shannon entropy in bits per byte.
pub fn entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| -(c as f64 / n) * (c as f64 / n).log2())
        .sum()
}

/// A random-looking value: enough distinct symbols for its length, and
/// several character classes. `aaaaaaaa`, `changeme`, `XXXXXXXXXXXX` fail.
fn looks_random(v: &[u8], min_bits: f64) -> bool {
    let classes = [
        v.iter().any(u8::is_ascii_lowercase),
        v.iter().any(u8::is_ascii_uppercase),
        v.iter().any(u8::is_ascii_digit),
        v.iter().any(|c| !c.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|&&b| b)
    .count();
    let need = min_bits.min((v.len() as f64).log2() * 0.8);
    classes >= 2 && entropy(v) >= need
}

/// Well-known placeholders and documentation values that are not secrets.
fn is_placeholder(v: &[u8]) -> bool {
    let lower = v.to_ascii_lowercase();
    const WORDS: &[&[u8]] = &[
        b"example",
        b"changeme",
        b"change_me",
        b"placeholder",
        b"your",
        b"xxxx",
        b"redacted",
        b"dummy",
        b"sample",
        b"secret_here",
        b"password",
        b"notasecret",
        b"replace",
    ];
    WORDS.iter().any(|w| memmem::find(&lower, w).is_some())
        || v.starts_with(b"${")
        || v.starts_with(b"{{")
        || v.starts_with(b"%(")
        || v.starts_with(b"<")
        || v.starts_with(b"$(")
}

fn line_end(data: &[u8], from: usize) -> usize {
    memchr::memchr(b'\n', &data[from..]).map_or(data.len(), |i| from + i)
}

/// Skips `"`/`'`/spaces/tabs and one `:` or `=` (or `=>`), as between a key and its value.
fn skip_assign(data: &[u8], mut p: usize) -> Option<usize> {
    let limit = (p + 16).min(data.len());
    let mut seen_op = false;
    while p < limit {
        match data[p] {
            b'"' | b'\'' | b' ' | b'\t' => p += 1,
            b':' | b'=' if !seen_op => {
                seen_op = true;
                p += 1;
                if data.get(p) == Some(&b'>') {
                    p += 1;
                }
            }
            _ => break,
        }
    }
    seen_op.then_some(p)
}

// ----- PEM / OpenSSH / PGP ----------------------------------------------------

/// A PEM block that is really a private key: `-----BEGIN <label>-----`, the
/// label naming a private key, optional RFC 1421 headers, a base64 body that
/// decodes, and the matching END line. The decoded body must be DER (`0x30`)
/// unless the PEM is legacy-encrypted; OpenSSH keys must start with
/// `openssh-key-v1\0`. Lines may end in `\n`, `\r\n`, or a JSON-escaped `\n`
/// (keys inside GCP service-account files and other JSON).
fn pem(data: &[u8], at: usize, alen: usize) -> Option<Found> {
    let lab_start = at + alen;
    let window = &data[lab_start..(lab_start + 64).min(data.len())];
    let lab_len = memmem::find(window, b"-----")?;
    let label = &window[..lab_len];
    if !label
        .iter()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b' ')
    {
        return None;
    }
    let label = std::str::from_utf8(label).ok()?;
    if !label.contains("PRIVATE KEY") {
        return None;
    }
    let mut p = lab_start + lab_len + 5;
    let rest = &data[p..];
    let nl: &[u8] = if rest.starts_with(b"\r\n") {
        b"\r\n"
    } else if rest.starts_with(b"\n") {
        b"\n"
    } else if rest.starts_with(b"\\r\\n") {
        b"\\r\\n"
    } else if rest.starts_with(b"\\n") {
        b"\\n"
    } else {
        return None;
    };
    let end_marker = format!("-----END {label}-----");
    let limit = (p + 256 * 1024).min(data.len());
    let mut body = Vec::new();
    let mut encrypted = label.contains("ENCRYPTED");
    let mut end = None;
    let mut lines = 0;
    while p < limit && lines < 4000 {
        lines += 1;
        let next = memmem::find(&data[p..limit], nl).map_or(limit, |i| p + i);
        let line = data[p..next].trim_ascii();
        if line.starts_with(b"-----END ") {
            if line.starts_with(end_marker.as_bytes()) {
                end = Some(
                    p + (line.as_ptr() as usize - data[p..].as_ptr() as usize) + end_marker.len(),
                );
            }
            break;
        }
        if line.is_empty() || (label.contains("PGP") && line.starts_with(b"=") && line.len() <= 5) {
            // blank separator or PGP armor checksum
        } else if body.is_empty() && line.contains(&b':') {
            if memmem::find(line, b"ENCRYPTED").is_some() {
                encrypted = true;
            }
        } else if line.iter().all(|&c| is_b64(c) || c == b'=') {
            body.extend_from_slice(line);
        } else {
            return None;
        }
        p = next + nl.len();
    }
    let end = end?;
    if body.len() < 64 {
        return None;
    }
    let der = b64_engine().decode(&body).ok()?;
    let rule = if label == "OPENSSH PRIVATE KEY" {
        if !der.starts_with(b"openssh-key-v1\0") {
            return None;
        }
        // The cipher name follows the magic as an SSH string.
        if der.get(15..19).is_some_and(|n| n != [0, 0, 0, 4]) || der.get(19..23) != Some(b"none") {
            encrypted = true;
        }
        "openssh-private-key"
    } else if label.contains("PGP") {
        if der.first().is_none_or(|b| b & 0x80 == 0) {
            return None;
        }
        "private-key"
    } else {
        if !encrypted && der.first() != Some(&0x30) {
            return None;
        }
        "private-key"
    };
    let enc = if encrypted { ", encrypted" } else { "" };
    Some((
        at,
        end,
        rule,
        format!(
            "-----BEGIN {label}----- [REDACTED: {} byte key{enc}] -----END {label}-----",
            der.len()
        ),
    ))
}

/// A PuTTY key file: the header, a `Private-Lines: N` count followed by N
/// base64 lines, and a `Private-MAC:` line.
fn putty(data: &[u8], at: usize, alen: usize) -> Option<Found> {
    let version = *data.get(at + alen)?;
    if !matches!(version, b'1'..=b'3') || data.get(at + alen + 1..at + alen + 3) != Some(b": ") {
        return None;
    }
    let alg_start = at + alen + 3;
    let alg_end = span(data, alg_start, alg_start + 64, |c| c.is_ascii_graphic());
    let alg = String::from_utf8_lossy(&data[alg_start..alg_end]).into_owned();
    let limit = (at + 64 * 1024).min(data.len());
    let win = &data[at..limit];
    let pl = memmem::find(win, b"Private-Lines: ")? + at + 15;
    let num_end = span(data, pl, pl + 4, |c| c.is_ascii_digit());
    let n: usize = std::str::from_utf8(&data[pl..num_end]).ok()?.parse().ok()?;
    if n == 0 || n > 500 {
        return None;
    }
    let mut p = line_end(data, pl) + 1;
    let mut b64 = 0;
    for _ in 0..n {
        if p >= limit {
            return None;
        }
        let e = line_end(data, p);
        let line = data[p..e].trim_ascii();
        if line.is_empty() || !line.iter().all(|&c| is_b64(c) || c == b'=') {
            return None;
        }
        b64 += line.len();
        p = e + 1;
    }
    if b64 < 16
        || !data
            .get(p..)
            .is_some_and(|r| r.starts_with(b"Private-MAC: "))
    {
        return None;
    }
    let end = line_end(data, p);
    let enc = memmem::find(win, b"Encryption: none").is_none();
    let enc = if enc { ", encrypted" } else { "" };
    Some((
        at,
        end,
        "putty-private-key",
        format!(
            "PuTTY-User-Key-File-{}: {alg} [REDACTED: {b64} base64 chars of private key{enc}]",
            version as char
        ),
    ))
}

// ----- keystores --------------------------------------------------------------

/// DER length at `data[0..]`: (length or None for indefinite, header bytes).
fn der_len(data: &[u8]) -> Option<(Option<usize>, usize)> {
    let first = *data.first()?;
    if first < 0x80 {
        return Some((Some(first as usize), 1));
    }
    if first == 0x80 {
        return Some((None, 1));
    }
    let n = (first & 0x7f) as usize;
    if n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | *data.get(1 + i)? as usize;
    }
    Some((Some(len), 1 + n))
}

const OID_PKCS7_DATA: &[u8] = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x01";
const OID_PKCS7_SIGNED: &[u8] = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02";
/// `pkcs-12-keyBag` and `pkcs-12-pkcs-8ShroudedKeyBag` share this prefix.
const OID_KEYBAG_PREFIX: &[u8] = b"\x2a\x86\x48\x86\xf7\x0d\x01\x0c\x0a\x01";
const OID_PKCS7_ENCRYPTED: &[u8] = b"\x2a\x86\x48\x86\xf7\x0d\x01\x07\x06";

/// A PKCS#12 PFX: `SEQUENCE { INTEGER 3, ContentInfo { pkcs7-data | signedData ... } }`
/// that holds a key bag (or an encrypted part that could hide one). A
/// certificates-only truststore is not a secret and is not reported.
fn pkcs12(data: &[u8], at: usize, _alen: usize) -> Option<Found> {
    let (start, total) = (2..=5)
        .filter_map(|back| at.checked_sub(back))
        .find_map(|s| {
            if data[s] != 0x30 {
                return None;
            }
            let (len, hl) = der_len(&data[s + 1..])?;
            if s + 1 + hl != at {
                return None;
            }
            match len {
                Some(l) if l >= 64 && s + 1 + hl + l <= data.len() => Some((s, s + 1 + hl + l)),
                None => Some((s, data.len())),
                _ => None,
            }
        })?;
    let ci = at + 3;
    let (_, hl) = der_len(data.get(ci + 1..)?)?;
    let oid = data.get(ci + 1 + hl..ci + 1 + hl + OID_PKCS7_DATA.len())?;
    if oid != OID_PKCS7_DATA && oid != OID_PKCS7_SIGNED {
        return None;
    }
    let body = &data[start..total];
    let has_key = memmem::find(body, OID_KEYBAG_PREFIX).is_some();
    let has_encrypted = memmem::find(body, OID_PKCS7_ENCRYPTED).is_some();
    if !has_key && !has_encrypted {
        return None;
    }
    let what = if has_key {
        "key bag"
    } else {
        "encrypted content"
    };
    Some((
        start,
        total,
        "pkcs12-keystore",
        format!(
            "PKCS#12 keystore, {} bytes, with {what} [REDACTED]",
            total - start
        ),
    ))
}

/// A Java keystore (JKS/JCEKS) at the start of a file, with at least one
/// private- or secret-key entry (trusted-certificate-only stores are fine).
pub fn java_keystore(data: &[u8]) -> Option<Hit> {
    let magic = data.get(0..4)?;
    if magic != b"\xfe\xed\xfe\xed" && magic != b"\xce\xce\xce\xce" {
        return None;
    }
    let be32 = |p: usize| {
        data.get(p..p + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let be16 = |p: usize| {
        data.get(p..p + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    };
    if !matches!(be32(4)?, 1 | 2) {
        return None;
    }
    let count = be32(8)?;
    let mut p = 12;
    for _ in 0..count.min(100_000) {
        let tag = be32(p)?;
        if tag == 1 || tag == 3 {
            return Some(Hit {
                rule: "pkcs12-keystore",
                severity: Severity::Error,
                offset: 0,
                end: data.len(),
                preview: "Java keystore with a private/secret key entry [REDACTED]".into(),
            });
        }
        if tag != 2 {
            return None;
        }
        p += 4;
        p += 2 + be16(p)?; // alias
        p += 8; // date
        p += 2 + be16(p)?; // certificate type
        p += 4 + be32(p)? as usize; // certificate
    }
    None
}

// ----- cloud credentials --------------------------------------------------------

fn aws_key_id(data: &[u8], at: usize, _alen: usize) -> Option<Found> {
    if at > 0 && data[at - 1].is_ascii_alphanumeric() {
        return None;
    }
    let end = span(data, at + 4, at + 21, |c| {
        c.is_ascii_uppercase() || c.is_ascii_digit()
    });
    if end != at + 20 || data.get(end).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let id = &data[at..end];
    if id.ends_with(b"EXAMPLE") || entropy(&id[4..]) < 3.0 {
        return None;
    }
    Some((
        at,
        end,
        "aws-access-key-id",
        format!("{}[REDACTED: 16 chars]", String::from_utf8_lossy(&id[..4])),
    ))
}

fn aws_secret(data: &[u8], at: usize, alen: usize) -> Option<Found> {
    let v = skip_assign(data, at + alen)?;
    let end = span(data, v, v + 41, is_b64);
    if end - v != 40 || data.get(end).is_some_and(|&c| is_b64(c)) {
        return None;
    }
    let val = &data[v..end];
    if memmem::find(val, b"EXAMPLEKEY").is_some() || !looks_random(val, 4.0) {
        return None;
    }
    let key = String::from_utf8_lossy(&data[at..at + alen]);
    Some((
        v,
        end,
        "aws-secret-key",
        format!("{key} = [REDACTED: 40 chars]"),
    ))
}

fn gcp(data: &[u8], at: usize, alen: usize) -> Option<Found> {
    // `"type": "service_account"` ...
    let before = &data[at.saturating_sub(32)..at];
    if memmem::find(before, b"\"type\"").is_none()
        || data.get(at - 1) != Some(&b'"')
        || data.get(at + alen) != Some(&b'"')
    {
        return None;
    }
    // ... and a private key in the same (small) JSON document.
    let lo = at.saturating_sub(16 * 1024);
    let hi = (at + 16 * 1024).min(data.len());
    let win = &data[lo..hi];
    let k = memmem::find(win, b"\"private_key\"")?;
    let v = skip_assign(win, k + 13)?;
    if !win[v..].starts_with(b"-----BEGIN") {
        return None;
    }
    let start = lo + k;
    let end = lo + v + memmem::find(&win[v..], b"PRIVATE KEY-----")?;
    let id_hint = memmem::find(win, b"\"client_email\"").map_or("", |_| ", client_email present");
    Some((
        start,
        end,
        "gcp-service-account",
        format!("service_account JSON with \"private_key\" [REDACTED]{id_hint}"),
    ))
}

/// Azure's storage emulator key is published in Microsoft's documentation.
const AZURE_EMULATOR_KEY: &[u8] =
    b"Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn azure(data: &[u8], at: usize, alen: usize) -> Option<Found> {
    let v = at + alen;
    let end = span(data, v, v + 200, |c| is_b64(c) || c == b'=');
    let val = &data[v..end];
    if val.len() < 40 || val == AZURE_EMULATOR_KEY || !looks_random(val, 4.0) {
        return None;
    }
    if b64_engine().decode(val).ok()?.len() < 30 {
        return None;
    }
    let key = String::from_utf8_lossy(&data[at..at + alen]);
    Some((
        v,
        end,
        "azure-connection-string",
        format!("{key}[REDACTED: {} chars]", val.len()),
    ))
}

fn kube_client_key(data: &[u8], at: usize, alen: usize) -> Option<Found> {
    let v = skip_assign(data, at + alen)?;
    let end = span(data, v, v + 64 * 1024, |c| is_b64(c) || c == b'=');
    let val = &data[v..end];
    if val.len() < 64 {
        return None;
    }
    let pem = b64_engine().decode(val).ok()?;
    memmem::find(&pem, b"PRIVATE KEY")?;
    Some((
        v,
        end,
        "kubeconfig-client-key",
        format!("client-key-data: [REDACTED: {} byte PEM key]", pem.len()),
    ))
}

// ----- tokens -----------------------------------------------------------------

fn jwt(data: &[u8], at: usize, _alen: usize) -> Option<Found> {
    if at > 0 && (is_b64url(data[at - 1]) || data[at - 1] == b'.') {
        return None;
    }
    let h_end = span(data, at, at + 2048, is_b64url);
    if h_end - at < 16 || data.get(h_end) != Some(&b'.') {
        return None;
    }
    let p_end = span(data, h_end + 1, h_end + 1 + 64 * 1024, is_b64url);
    if p_end - h_end - 1 < 16 || data.get(p_end) != Some(&b'.') {
        return None;
    }
    let s_end = span(data, p_end + 1, p_end + 1 + 4096, is_b64url);
    let header = b64url_engine().decode(&data[at..h_end]).ok()?;
    let payload = b64url_engine().decode(&data[h_end + 1..p_end]).ok()?;
    if !header.starts_with(b"{")
        || memmem::find(&header, b"\"alg\"").is_none()
        || !payload.trim_ascii_start().starts_with(b"{")
    {
        return None;
    }
    let alg_none = memmem::find(&header, b"\"none\"").is_some();
    if s_end - p_end - 1 < 16 && !alg_none {
        return None;
    }
    Some((
        at,
        s_end,
        "jwt",
        format!("JWT [REDACTED: {} chars]", s_end - at),
    ))
}

fn github(data: &[u8], at: usize, alen: usize) -> Option<Found> {
    if inside_word(data, at) {
        return None;
    }
    let v = at + alen;
    let (end, want) = if alen == 11 {
        (span(data, v, v + 256, is_word), 82..=255)
    } else {
        (
            span(data, v, v + 256, |c| c.is_ascii_alphanumeric()),
            36..=255,
        )
    };
    if !want.contains(&(end - v))
        || data.get(end).is_some_and(|&c| is_word(c))
        || !looks_random(&data[v..end], 4.0)
    {
        return None;
    }
    prefixed_token(data, at, v, end, "github-token")
}

fn gitlab(data: &[u8], at: usize, alen: usize) -> Option<Found> {
    if inside_word(data, at) {
        return None;
    }
    let v = at + alen;
    let end = span(data, v, v + 256, |c| is_b64url(c) || c == b'.');
    if end - v < 20 || !looks_random(&data[v..end], 3.5) {
        return None;
    }
    prefixed_token(data, at, v, end, "gitlab-token")
}

fn slack(data: &[u8], at: usize, alen: usize) -> Option<Found> {
    let v = at + alen;
    if data[at] == b'h' {
        // hooks.slack.com/services/T.../B.../secret
        let end = span(data, v, v + 256, |c| c.is_ascii_alphanumeric() || c == b'/');
        let parts: Vec<&[u8]> = data[v..end].split(|&c| c == b'/').collect();
        if parts.len() != 3
            || !parts[0].starts_with(b"T")
            || !parts[1].starts_with(b"B")
            || parts[2].len() < 20
        {
            return None;
        }
        return Some((
            at,
            end,
            "slack-token",
            "hooks.slack.com/services/[REDACTED webhook]".into(),
        ));
    }
    if inside_word(data, at) {
        return None;
    }
    let end = span(data, v, v + 256, |c| c.is_ascii_alphanumeric() || c == b'-');
    let val = &data[v..end];
    if val.len() < 20 || val.iter().filter(|&&c| c == b'-').count() < 2 || !looks_random(val, 3.5) {
        return None;
    }
    prefixed_token(data, at, v, end, "slack-token")
}

/// Docker's `config.json`: `"auths": { "registry": { "auth": "base64(user:password)" } }`.
fn docker_auth(data: &[u8], at: usize, alen: usize) -> Option<Found> {
    // Only inside a Docker-style `"auths"` map.
    memmem::find(&data[at.saturating_sub(64 * 1024)..at], b"\"auths\"")?;
    let v = skip_assign(data, at + alen)?;
    if data.get(v - 1) != Some(&b'"') {
        return None;
    }
    let end = span(data, v, v + 8192, |c| {
        is_b64(c) || c == b'=' || c == b'-' || c == b'_' || c == b'.'
    });
    let val = &data[v..end];
    if data.get(end) != Some(&b'"') || val.len() < 8 {
        return None;
    }
    let key = String::from_utf8_lossy(&data[at..at + alen]);
    if alen == 6 {
        let dec = b64_engine().decode(val).ok()?;
        let colon = dec.iter().position(|&c| c == b':')?;
        if colon == 0 || colon + 1 >= dec.len() {
            return None;
        }
    }
    Some((
        v,
        end,
        "docker-config-auth",
        format!("{key}: [REDACTED: {} chars]", val.len()),
    ))
}

// ---------------------------------------------------------------------------
// File rules (by name)
// ---------------------------------------------------------------------------

/// The rules that depend on the file's name (and sometimes its parent
/// directory). `path` is the image path (`/etc/shadow`).
pub fn scan_named(path: &str, data: &[u8]) -> Vec<Hit> {
    let mut hits = Vec::new();
    let base = path.rsplit('/').next().unwrap_or(path);
    let parent = path.rsplit('/').nth(1).unwrap_or("");
    if data.is_empty() {
        return hits;
    }
    let lower = base.to_ascii_lowercase();

    if is_host_key_name(base, parent) {
        hits.push(hit(
            "ssh-host-key",
            0,
            data.len(),
            format!("SSH host key file {base} [REDACTED]"),
        ));
    }
    if is_shadow_name(base) || is_passwd_name(base) {
        shadow(data, is_passwd_name(base), &mut hits);
    }
    if base == "authorized_keys" || base == "authorized_keys2" {
        authorized_keys(data, &mut hits);
    }
    if base == ".netrc" || base == "_netrc" {
        netrc(data, &mut hits);
    }
    if base == ".git-credentials" || path.ends_with("/git/credentials") {
        git_credentials(data, &mut hits);
    }
    if lower.ends_with(".p12") || lower.ends_with(".pfx") {
        // Caught by content unless it is BER or fully encrypted: report by name.
        if data.first() == Some(&0x30) {
            hits.push(hit(
                "pkcs12-keystore",
                0,
                data.len(),
                format!("PKCS#12 file {base}, {} bytes [REDACTED]", data.len()),
            ));
        }
    }
    if let Some(h) = java_keystore(data) {
        hits.push(h);
    }
    if let Some(what) = scrub_leftover(path, base, data) {
        hits.push(hit(
            "scrub-leftover",
            0,
            data.len(),
            format!("{what} {base}, {} bytes [REDACTED]", data.len()),
        ));
    }
    let clouds = matches!(
        base,
        "clouds.yaml" | "clouds.yml" | "secure.yaml" | "secure.yml"
    );
    if clouds {
        yaml_keys(
            data,
            "openstack-clouds-yaml",
            &["password", "application_credential_secret", "token"],
            &mut hits,
        );
    }
    let kube = is_kubeconfig(path, data);
    if kube {
        yaml_keys(
            data,
            "kubeconfig-token",
            &["token", "id-token", "refresh-token", "password"],
            &mut hits,
        );
    }
    if !clouds && !kube && is_config_name(path) && is_text(data) {
        generic(data, &mut hits);
    }
    hits
}

fn hit(rule: &'static str, offset: usize, end: usize, preview: String) -> Hit {
    Hit {
        rule,
        severity: Severity::Error,
        offset,
        end,
        preview,
    }
}

/// What the build's scrub stage deletes (or empties) because it identifies
/// one machine or records what someone typed: shell and tool histories,
/// machine ids and random seeds. Our own builds never contain them, so a
/// finding means an image that did not go through the scrub (`ipa-build
/// audit` on someone else's ramdisk) or a hook that wrote one after it.
/// Host keys have their own rule (`ssh-host-key`). Returns what it is.
fn scrub_leftover(path: &str, base: &str, data: &[u8]) -> Option<&'static str> {
    const HISTORIES: &[&str] = &[
        ".bash_history",
        ".ash_history",
        ".sh_history",
        ".zsh_history",
        ".python_history",
        ".mysql_history",
        ".psql_history",
        ".lesshst",
        ".viminfo",
    ];
    const SEEDS: &[&str] = &[
        "/var/lib/systemd/random-seed",
        "/var/lib/systemd/credential.secret",
        "/var/lib/urandom/random-seed",
    ];
    let inner = path.rsplit('!').next().unwrap_or(path);
    let image = format!("/{}", inner.trim_start_matches('/'));
    if HISTORIES.contains(&base) {
        return Some("shell or tool history");
    }
    if SEEDS.iter().any(|s| image.ends_with(s)) {
        return Some("random seed");
    }
    let machine_id =
        image.ends_with("/etc/machine-id") || image.ends_with("/var/lib/dbus/machine-id");
    // systemd wants /etc/machine-id present and empty (or `uninitialized`):
    // only a real id ties every boot of the image to one machine.
    let id = String::from_utf8_lossy(data);
    let id = id.trim();
    if machine_id && !id.is_empty() && id != "uninitialized" {
        return Some("baked machine id");
    }
    None
}

fn is_host_key_name(base: &str, parent: &str) -> bool {
    if base.ends_with(".pub") {
        return false;
    }
    (base.starts_with("ssh_host_") && base.ends_with("key"))
        || (base.starts_with("dropbear_") && base.ends_with("_host_key"))
        || (parent == "dropbear" && base.ends_with("_host_key"))
}

/// `shadow`, `gshadow` and their backups (`shadow-`, `shadow~`, `shadow.bak`, ...).
fn is_shadow_name(base: &str) -> bool {
    let stem = base.trim_end_matches(['-', '~']);
    let stem = [
        ".bak",
        ".old",
        ".orig",
        ".dpkg-old",
        ".dpkg-dist",
        ".dpkg-new",
    ]
    .iter()
    .find_map(|s| stem.strip_suffix(s))
    .unwrap_or(stem);
    stem == "shadow" || stem == "gshadow" || base.ends_with("shadow-")
}

fn is_passwd_name(base: &str) -> bool {
    matches!(base, "passwd" | "passwd-" | "group" | "group-")
}

/// Lines `name:hash:...`: any hash other than the locked/disabled markers
/// (`*`, `!`, `!!`, `*LK*`, ...) is a finding, for every user, locked or not
/// (`!$6$...` still ships a crackable hash). An empty field is not a secret.
/// In `passwd`/`group` only crypt-style hashes (`$id$...`) count: `x` is normal.
fn shadow(data: &[u8], passwd_style: bool, hits: &mut Vec<Hit>) {
    let mut off = 0;
    for line in data.split(|&c| c == b'\n') {
        let line_off = off;
        off += line.len() + 1;
        if line.starts_with(b"#") {
            continue;
        }
        let mut fields = line.splitn(3, |&c| c == b':');
        let (Some(user), Some(hash)) = (fields.next(), fields.next()) else {
            continue;
        };
        if user.is_empty() || !user.iter().all(|&c| c.is_ascii_graphic()) {
            continue;
        }
        let hash = hash.trim_ascii_end();
        let locked =
            hash.iter().all(|&c| c == b'!' || c == b'*') || hash == b"*LK*" || hash == b"*NP*";
        if hash.is_empty() || locked {
            continue;
        }
        if passwd_style && !hash.starts_with(b"$") {
            continue;
        }
        let kind = hash.trim_ascii_start().strip_prefix(b"!").unwrap_or(hash);
        let kind = match kind.strip_prefix(b"$") {
            Some(r) => format!(
                "${}$",
                String::from_utf8_lossy(r.split(|&c| c == b'$').next().unwrap_or(b""))
            ),
            None => "legacy".to_string(),
        };
        let lock = if hash.starts_with(b"!") {
            " (locked)"
        } else {
            ""
        };
        hits.push(hit(
            "shadow-hash",
            line_off + user.len() + 1,
            line_off + user.len() + 1 + hash.len(),
            format!(
                "{}:[REDACTED {kind} hash{lock}]",
                String::from_utf8_lossy(user)
            ),
        ));
    }
}

fn authorized_keys(data: &[u8], hits: &mut Vec<Hit>) {
    let mut first = None;
    let mut n = 0;
    let mut off = 0;
    for line in data.split(|&c| c == b'\n') {
        let t = line.trim_ascii();
        if !t.is_empty() && !t.starts_with(b"#") {
            n += 1;
            first.get_or_insert(off);
        }
        off += line.len() + 1;
    }
    if let Some(first) = first {
        hits.push(Hit {
            rule: "authorized-keys",
            severity: Severity::Warning,
            offset: first,
            end: data.len(),
            preview: format!("authorized_keys with {n} key line(s)"),
        });
    }
}

fn netrc(data: &[u8], hits: &mut Vec<Hit>) {
    let mut toks = Vec::new();
    let mut i = 0;
    while i < data.len() {
        while i < data.len() && data[i].is_ascii_whitespace() {
            i += 1;
        }
        let s = i;
        while i < data.len() && !data[i].is_ascii_whitespace() {
            i += 1;
        }
        if s < i {
            toks.push((s, i));
        }
    }
    for w in toks.windows(2) {
        if &data[w[0].0..w[0].1] == b"password" {
            hits.push(hit(
                "netrc",
                w[1].0,
                w[1].1,
                format!("password [REDACTED: {} chars]", w[1].1 - w[1].0),
            ));
        }
    }
}

fn git_credentials(data: &[u8], hits: &mut Vec<Hit>) {
    let mut off = 0;
    for line in data.split(|&c| c == b'\n') {
        let line_off = off;
        off += line.len() + 1;
        let Some(scheme) = memmem::find(line, b"://") else {
            continue;
        };
        let rest = &line[scheme + 3..];
        let Some(at) = rest.iter().position(|&c| c == b'@') else {
            continue;
        };
        let userinfo = &rest[..at];
        if let Some(colon) = userinfo.iter().position(|&c| c == b':')
            && colon + 1 < userinfo.len()
        {
            let host = String::from_utf8_lossy(&rest[at + 1..])
                .trim_end()
                .to_string();
            hits.push(hit(
                "git-credentials",
                line_off + scheme + 3 + colon + 1,
                line_off + scheme + 3 + at,
                format!(
                    "{}://[REDACTED]@{host}",
                    String::from_utf8_lossy(&line[..scheme])
                ),
            ));
        }
    }
}

fn is_kubeconfig(path: &str, data: &[u8]) -> bool {
    let named = path.ends_with("/.kube/config")
        || path
            .rsplit('/')
            .next()
            .is_some_and(|b| b.starts_with("kubeconfig"));
    let head = &data[..data.len().min(64 * 1024)];
    named
        || (memmem::find(head, b"kind: Config").is_some()
            && memmem::find(head, b"users:").is_some())
}

/// YAML lines `key: value` (any indentation, optional `- `) for the given
/// keys, with a non-empty value that is not a placeholder.
fn yaml_keys(data: &[u8], rule: &'static str, keys: &[&str], hits: &mut Vec<Hit>) {
    let mut off = 0;
    for line in data.split(|&c| c == b'\n') {
        let line_off = off;
        off += line.len() + 1;
        let t = line.trim_ascii_start();
        let t = t.strip_prefix(b"- ").unwrap_or(t);
        let Some(colon) = t.iter().position(|&c| c == b':') else {
            continue;
        };
        let key = t[..colon].trim_ascii().trim_ascii();
        let key = key
            .strip_prefix(b"\"")
            .and_then(|k| k.strip_suffix(b"\""))
            .unwrap_or(key);
        if !keys.iter().any(|k| k.as_bytes() == key) {
            continue;
        }
        let val = t[colon + 1..].trim_ascii();
        let val = val
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(val);
        let val = val
            .strip_prefix(b"'")
            .and_then(|v| v.strip_suffix(b"'"))
            .unwrap_or(val);
        if val.is_empty()
            || val.starts_with(b"#")
            || val == b"null"
            || val == b"~"
            || is_placeholder(val)
        {
            continue;
        }
        let start = line_off + (line.len() - t.len()) + colon + 1;
        hits.push(hit(
            rule,
            start,
            line_off + line.len(),
            format!(
                "{}: [REDACTED: {} chars]",
                String::from_utf8_lossy(key),
                val.len()
            ),
        ));
    }
}

/// Files the generic rule reads: configuration by extension or location.
fn is_config_name(path: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    const EXT: &[&str] = &[
        ".conf",
        ".cfg",
        ".cnf",
        ".ini",
        ".env",
        ".yaml",
        ".yml",
        ".json",
        ".toml",
        ".properties",
        ".config",
        ".rc",
    ];
    EXT.iter().any(|e| base.ends_with(e))
        || base.starts_with(".env")
        || (path.starts_with("/etc/") && !base.contains('.'))
        || path.contains("/etc/") && base.ends_with(".d")
}

fn is_text(data: &[u8]) -> bool {
    !data[..data.len().min(8192)].contains(&0)
}

const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "access_key",
    "private_key",
    "credential",
];

/// `<something with password/secret/token/...>` `=` or `:` `<value>`, on a
/// line that is not a comment, with a value that looks random. The entropy
/// bar is what keeps `password = changeme` and `secret: ${SECRET}` out.
fn generic(data: &[u8], hits: &mut Vec<Hit>) {
    let mut off = 0;
    for line in data.split(|&c| c == b'\n') {
        let line_off = off;
        off += line.len() + 1;
        let t = line.trim_ascii_start();
        if t.starts_with(b"#")
            || t.starts_with(b";")
            || t.starts_with(b"//")
            || t.starts_with(b"*")
            || line.len() > 4096
        {
            continue;
        }
        let lower = line.to_ascii_lowercase();
        for w in SECRET_WORDS {
            let Some(k) = memmem::find(&lower, w.as_bytes()) else {
                continue;
            };
            // the key: the identifier around the word
            let key_end = span(&lower, k, lower.len(), |c| {
                is_word(c) || c == b'-' || c == b'.'
            });
            let Some(v) = skip_assign(line, key_end) else {
                continue;
            };
            let quoted = v > 0 && matches!(line[v - 1], b'"' | b'\'');
            let end = span(line, v, line.len(), |c| {
                if quoted {
                    c != b'"' && c != b'\''
                } else {
                    !c.is_ascii_whitespace() && c != b';' && c != b','
                }
            });
            let val = &line[v..end];
            // Below 10 characters entropy says little: `hunter22` passes as
            // well as `Zq8kd02L`. Short values are left to review.
            if val.len() < 10
                || val.len() > 512
                || is_placeholder(val)
                || val.starts_with(b"/")
                || val.contains(&b'$')
            {
                continue;
            }
            if !looks_random(val, 3.5) {
                continue;
            }
            let key = String::from_utf8_lossy(&line[k..key_end]).into_owned();
            hits.push(hit(
                "generic-secret",
                line_off + v,
                line_off + end,
                format!("{key}=[REDACTED: {} chars]", val.len()),
            ));
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_literal_without_body_is_not_a_key() {
        let lit = b"\0-----BEGIN RSA PRIVATE KEY-----\0-----END RSA PRIVATE KEY-----\0";
        assert!(scan_content(lit).unwrap().is_empty());
        let fmt = b"-----BEGIN %s-----\n%s\n-----END %s-----\n";
        assert!(scan_content(fmt).unwrap().is_empty());
    }

    #[test]
    fn shadow_locks_and_empty_are_fine_hashes_are_not() {
        let mut hits = Vec::new();
        shadow(b"root:*:19000:0:99999:7:::\nbin:!:1::::::\nx::1::::::\nrescue:!!:1::::::\nadm:$6$salt$abc:1::::::\nlk:!$y$j9T$abc:1::::::\n", false, &mut hits);
        let users: Vec<_> = hits
            .iter()
            .map(|h| h.preview.split(':').next().unwrap().to_string())
            .collect();
        assert_eq!(users, ["adm", "lk"]);
        assert!(!hits[0].preview.contains("abc"));
    }

    #[test]
    fn shadow_names() {
        for n in [
            "shadow",
            "gshadow",
            "shadow-",
            "gshadow-",
            "shadow.bak",
            "shadow~",
        ] {
            assert!(is_shadow_name(n), "{n}");
        }
        for n in ["shadows", "drop-shadow.png", "shadow.h", "libshadow.so"] {
            assert!(!is_shadow_name(n), "{n}");
        }
    }

    #[test]
    fn generic_needs_entropy() {
        let mut hits = Vec::new();
        generic(b"password = changeme\nsecret: ${SECRET}\n# password=Zq8#kd02LmPx1!\npassword=hunter22\n", &mut hits);
        assert!(hits.is_empty(), "{hits:?}");
        generic(b"db_password = \"Zq8kd02LmPx1vR\"\n", &mut hits);
        assert_eq!(hits.len(), 1);
        assert!(!hits[0].preview.contains("Zq8"));
    }

    #[test]
    fn entropy_of_uniform_bytes() {
        assert!((entropy(b"abcd") - 2.0).abs() < 1e-9);
        assert_eq!(entropy(b"aaaa"), 0.0);
    }

    #[test]
    fn tokens_need_boundaries_and_length() {
        assert!(
            scan_content(b"xghp_0123456789abcdefghijABCDEFGHIJklmnop")
                .unwrap()
                .is_empty()
        );
        assert!(scan_content(b"ghp_short").unwrap().is_empty());
        assert!(scan_content(b"AKIAIOSFODNN7EXAMPLE").unwrap().is_empty());
        let h = scan_content(b" AKIA2OGYBAH6Q7LZ3XNM ").unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].rule, "aws-access-key-id");
    }
}
